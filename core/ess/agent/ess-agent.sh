#!/bin/sh
# ess node agent: the node ends itself at its deadline, or after an idle window (issue 16).
#
#   ess-agent.sh deadline   shut down if the deadline in $ESS_EXPIRES_FILE has passed
#   ess-agent.sh idle       shut down if idle for $ESS_IDLE_TIMEOUT seconds
#   ess-agent.sh tick       both (what the systemd timer or cron entry runs every minute)
#   ess-agent.sh loop       tick every $ESS_AGENT_INTERVAL seconds, forever (no timer service)
#
# Plain POSIX sh (Amazon Linux, Ubuntu, dash, busybox). Busy means: an SSH session is open
# (an sshd "user@" process: `ess exec` runs inside one), a marker file in $ESS_BUSY_DIR
# names a live pid (a command that outlives its session), or the 1-minute load average is
# at least $ESS_IDLE_LOAD_MAX. Every command and path can be replaced through the
# environment (tests run the agent with a fake clock and a fake shutdown); the values
# ess chose at launch are in $ESS_AGENT_CONF, which never overrides the environment.
# Every action is logged, with why, to $ESS_AGENT_LOG and to syslog (tag ess-agent).
set -u

conf=${ESS_AGENT_CONF:-/etc/ess/agent.conf}
# shellcheck disable=SC1090
[ -r "$conf" ] && . "$conf"

: "${ESS_EXPIRES_FILE:=/etc/ess/expires}"
: "${ESS_IDLE_TIMEOUT:=}"
: "${ESS_IDLE_LOAD_MAX:=0.5}"
: "${ESS_IDLE_STATE:=/run/ess/last-busy}"
: "${ESS_BUSY_DIR:=/run/ess/busy}"
: "${ESS_AGENT_LOG:=/var/log/ess-agent.log}"
: "${ESS_AGENT_SYSLOG:=1}"
: "${ESS_AGENT_INTERVAL:=60}"
: "${ESS_NOW_CMD:=date +%s}"
: "${ESS_LOAD_CMD:=cut -d ' ' -f 1 /proc/loadavg}"
: "${ESS_SESSIONS_CMD:=ps -eo args= | grep -cE '^sshd(-session)?: [^ ]+@'}"
: "${ESS_SHUTDOWN_CMD:=shutdown -h now}"

log() {
    printf '%s ess-agent: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$ESS_AGENT_LOG" 2>/dev/null
    if [ "$ESS_AGENT_SYSLOG" = 1 ] && command -v logger >/dev/null 2>&1; then
        logger -t ess-agent -- "$*" 2>/dev/null
    fi
    return 0
}

whole() {
    case ${1:-} in '' | *[!0-9]*) return 1 ;; esac
}

now() {
    eval "$ESS_NOW_CMD"
}

act() {
    log "$1; running: $ESS_SHUTDOWN_CMD"
    eval "$ESS_SHUTDOWN_CMD"
}

deadline() {
    [ -r "$ESS_EXPIRES_FILE" ] || return 0
    # The file holds "EPOCH STAMP": the number is read, the stamp is for people.
    read -r until stamp <"$ESS_EXPIRES_FILE" || [ -n "${until:-}" ] || return 0
    if ! whole "$until"; then
        log "ignoring $ESS_EXPIRES_FILE: no deadline in it"
        return 0
    fi
    t=$(now)
    whole "$t" || return 0
    if [ "$t" -ge "$until" ]; then
        act "deadline ${stamp:-$until} passed (max_lifetime)"
        return 1
    fi
}

busy_reason() {
    n=$(eval "$ESS_SESSIONS_CMD" 2>/dev/null | head -n 1)
    whole "$n" || n=0
    if [ "$n" -gt 0 ]; then
        echo "$n ssh session(s) open"
        return 0
    fi
    if [ -d "$ESS_BUSY_DIR" ]; then
        for marker in "$ESS_BUSY_DIR"/*; do
            [ -f "$marker" ] || continue
            pid=$(head -n 1 "$marker" 2>/dev/null)
            whole "$pid" || continue
            # A marker whose process is gone (killed, or from before a reboot) does not count.
            if [ -d "/proc/$pid" ] || kill -0 "$pid" 2>/dev/null; then
                echo "command running (${marker##*/}, pid $pid)"
                return 0
            fi
        done
    fi
    if awk -v load="$1" -v most="$ESS_IDLE_LOAD_MAX" 'BEGIN { exit !(load + 0 >= most + 0) }'; then
        echo "load $1 >= $ESS_IDLE_LOAD_MAX"
    fi
}

idle() {
    whole "$ESS_IDLE_TIMEOUT" || return 0
    t=$(now)
    whole "$t" || return 0
    load=$(eval "$ESS_LOAD_CMD" 2>/dev/null)
    load=${load:-0}
    if [ ! -d "$ESS_BUSY_DIR" ]; then
        # Anyone may mark a job busy; the sticky bit keeps them from removing others' markers.
        mkdir -p "$ESS_BUSY_DIR" 2>/dev/null && chmod 1777 "$ESS_BUSY_DIR" 2>/dev/null
    fi
    why=$(busy_reason "$load")
    mkdir -p "$(dirname "$ESS_IDLE_STATE")" 2>/dev/null
    if [ -n "$why" ]; then
        echo "$t" >"$ESS_IDLE_STATE"
        return 0
    fi
    # The window starts at the last time the node was seen busy, or at the agent's first look
    # (kept under /run: a node started again after a stop gets a whole window).
    last=$(cat "$ESS_IDLE_STATE" 2>/dev/null)
    # No record, or one from the future (the clock was set back): the window starts now.
    if ! whole "$last" || [ "$last" -gt "$t" ]; then
        echo "$t" >"$ESS_IDLE_STATE"
        last=$t
    fi
    quiet=$((t - last))
    if [ "$quiet" -ge "$ESS_IDLE_TIMEOUT" ]; then
        act "idle for ${quiet}s (idle_timeout ${ESS_IDLE_TIMEOUT}s): no ssh session, no running command, load $load < $ESS_IDLE_LOAD_MAX"
    fi
}

case ${1:-tick} in
deadline) deadline ;;
idle) idle ;;
tick) deadline && idle ;;
loop)
    while :; do
        deadline && idle
        sleep "$ESS_AGENT_INTERVAL"
    done
    ;;
*)
    echo "usage: $0 deadline|idle|tick|loop" >&2
    exit 2
    ;;
esac
exit 0
