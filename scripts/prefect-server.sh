#!/usr/bin/env bash
# One long-lived local Prefect server shared by many `casebook run` processes (dvc repro, deployments,
# the UI). Without PREFECT_API_URL every CLI process boots Prefect's temporary server (~10 s); pointing
# them all at this one pays that once.
#
#   scripts/prefect-server.sh start    start it in the background unless one already answers, wait until healthy
#   scripts/prefect-server.sh stop     stop the server this script started
#   scripts/prefect-server.sh status   say whether a server answers (exit 0) or not (exit 1)
#   scripts/prefect-server.sh url      print the API URL, for PREFECT_API_URL=$(scripts/prefect-server.sh url)
#
# Binds 127.0.0.1:${CASEBOOK_PREFECT_PORT:-4200}, analytics off; waits up to
# ${CASEBOOK_PREFECT_START_TIMEOUT:-120} s for /api/health. Pid and log: .casebook/prefect-server.{pid,log}.
# The database is Prefect's own (PREFECT_HOME, ~/.prefect by default): runs made with Prefect's
# temporary server use the same one, so they show up in this server's UI too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.casebook"
PID_FILE="$STATE/prefect-server.pid"
LOG_FILE="$STATE/prefect-server.log"
HOST=127.0.0.1
PORT="${CASEBOOK_PREFECT_PORT:-4200}"
API="http://$HOST:$PORT/api"
TIMEOUT="${CASEBOOK_PREFECT_START_TIMEOUT:-120}"

PREFECT="$ROOT/.venv/bin/prefect"
[ -x "$PREFECT" ] || PREFECT="$(command -v prefect || true)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"

healthy() {
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2).read()' \
        "$API/health" >/dev/null 2>&1
}

# The pid in the pid file, if that process is still the server we started (not a reused pid).
our_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    ps -o args= -p "$pid" 2>/dev/null | grep -q "server start" || return 1
    echo "$pid"
}

wait_healthy() {
    local pid="$1" waited=0
    until healthy; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: the Prefect server exited during start-up; last lines of $LOG_FILE:" >&2
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            return 1
        fi
        if [ "$waited" -ge "$TIMEOUT" ]; then
            echo "error: no answer from $API/health after ${TIMEOUT}s; see $LOG_FILE," \
                 "or stop it with '$0 stop'" >&2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

start() {
    mkdir -p "$STATE"
    # Two concurrent starts must not race for the port.
    if command -v flock >/dev/null; then
        exec 9>"$STATE/prefect-server.lock"
        flock 9
    fi
    local pid
    if healthy; then
        if pid="$(our_pid)"; then
            echo "Prefect server already running (pid $pid) at $API"
        else
            echo "a Prefect server already answers at $API (not started by this script; using it)"
        fi
        return 0
    fi
    if ! pid="$(our_pid)"; then
        [ -n "$PREFECT" ] || { echo "error: no prefect executable: run 'make setup' first" >&2; return 1; }
        # Job control gives the server its own process group, so `stop` also ends the workers it spawns.
        set -m
        nohup "$PREFECT" server start --host "$HOST" --port "$PORT" --analytics-off \
            >"$LOG_FILE" 2>&1 </dev/null 9>&- &
        pid=$!
        set +m
        echo "$pid" >"$PID_FILE"
        echo "starting Prefect server (pid $pid) at $API, log $LOG_FILE"
    fi
    wait_healthy "$pid"
    echo "Prefect server ready at $API (UI: http://$HOST:$PORT)"
}

stop() {
    local pid
    if ! pid="$(our_pid)"; then
        rm -f "$PID_FILE"
        echo "no Prefect server started by this script is running"
        return 0
    fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    echo "stopped Prefect server (pid $pid)"
}

status() {
    local pid
    if healthy; then
        if pid="$(our_pid)"; then
            echo "running (pid $pid) at $API"
        else
            echo "a Prefect server not started by this script answers at $API"
        fi
        return 0
    fi
    if pid="$(our_pid)"; then
        echo "starting or unhealthy (pid $pid): no answer from $API/health yet; see $LOG_FILE"
    else
        echo "not running"
    fi
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    url) echo "$API" ;;
    *)
        echo "usage: $0 {start|stop|status|url}" >&2
        exit 2
        ;;
esac
