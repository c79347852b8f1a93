#!/usr/bin/env bash
# Deploy CHOM onto this server: build a release, migrate, switch `current` atomically, reload
# without dropping requests, verify /health, and roll back by itself if the new release is not
# healthy. Safe to rerun: deploying the commit that is already current and healthy changes nothing.
#
#   deploy/deploy.sh [deploy] [--ref REF] [--fetch]
#                                           deploy REF (default HEAD) of CHOM_REPO; --fetch runs
#                                           `git fetch origin` in CHOM_REPO first
#   deploy/deploy.sh rollback               go back to the release before `current`
#   deploy/deploy.sh status                 releases, current, processes, /health
#   deploy/deploy.sh stop                   local mode: stop web, workers and beat
#
# Layout under CHOM_ROOT (default /srv/chom):
#   releases/<UTC timestamp>-<commit>/   code (git archive), venv/, static/, REVISION
#   current -> releases/...              what runs; switched with rename(2), never half-written
#   venvs/<hash>/                        shared virtualenvs (CHOM_SHARE_VENVS=1 only)
#   backups/db-<release>.dump            pg_dump before each migration (custom format, compressed)
#   run/, logs/                          local mode: pidfiles and process logs
#
# Environment (all optional):
#   CHOM_ROOT, CHOM_ENV_FILE (/etc/chom/chom.env), CHOM_REPO (the repository holding this script),
#   CHOM_REF (HEAD), CHOM_SERVICE_MANAGER (systemd | local), CHOM_PYTHON (python3.11),
#   CHOM_KEEP_RELEASES (5), CHOM_KEEP_BACKUPS (10), CHOM_MIN_FREE_MB (2048),
#   CHOM_WHEELHOUSE (install with --no-index --find-links DIR), CHOM_SHARE_VENVS (0: every
#   release builds its own virtualenv; 1: releases with identical requirements.txt and Python
#   share one, built once and never modified), CHOM_HEALTH_TIMEOUT (60), CHOM_CANARY_TIMEOUT (30),
#   CHOM_WORKER_TIMEOUT (60),
#   CHOM_WORKER_STOP_TIMEOUT (420), CHOM_CHECK_FAIL_LEVEL (WARNING), CHOM_WORKER_CONCURRENCY (2),
#   CHOM_NOTIFY_CONCURRENCY (2, local mode's notify worker; the unit sets its own),
#   CHOM_SYSTEMD_WEB (chom-web), CHOM_SYSTEMD_BEAT (chom-beat), CHOM_SYSTEMD_WORKER (chom-worker),
#   CHOM_SYSTEMD_NOTIFY (chom-notify: the notify worker, started and stopped with chom-worker@).
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHOM_ROOT=${CHOM_ROOT:-/srv/chom}
CHOM_ENV_FILE=${CHOM_ENV_FILE:-/etc/chom/chom.env}
CHOM_REPO=${CHOM_REPO:-$(dirname "$SCRIPT_DIR")}
CHOM_REF=${CHOM_REF:-HEAD}
CHOM_FETCH=${CHOM_FETCH:-0}
CHOM_SERVICE_MANAGER=${CHOM_SERVICE_MANAGER:-systemd}
CHOM_PYTHON=${CHOM_PYTHON:-python3.11}
CHOM_KEEP_RELEASES=${CHOM_KEEP_RELEASES:-5}
CHOM_KEEP_BACKUPS=${CHOM_KEEP_BACKUPS:-10}
CHOM_MIN_FREE_MB=${CHOM_MIN_FREE_MB:-2048}
CHOM_WHEELHOUSE=${CHOM_WHEELHOUSE:-}
CHOM_SHARE_VENVS=${CHOM_SHARE_VENVS:-0}
CHOM_HEALTH_TIMEOUT=${CHOM_HEALTH_TIMEOUT:-60}
CHOM_CANARY_TIMEOUT=${CHOM_CANARY_TIMEOUT:-30}
CHOM_WORKER_TIMEOUT=${CHOM_WORKER_TIMEOUT:-60}
CHOM_WORKER_STOP_TIMEOUT=${CHOM_WORKER_STOP_TIMEOUT:-420}
CHOM_CHECK_FAIL_LEVEL=${CHOM_CHECK_FAIL_LEVEL:-WARNING}
CHOM_WORKER_CONCURRENCY=${CHOM_WORKER_CONCURRENCY:-2}
CHOM_NOTIFY_CONCURRENCY=${CHOM_NOTIFY_CONCURRENCY:-2}
CHOM_SYSTEMD_WEB=${CHOM_SYSTEMD_WEB:-chom-web}
CHOM_SYSTEMD_BEAT=${CHOM_SYSTEMD_BEAT:-chom-beat}
CHOM_SYSTEMD_WORKER=${CHOM_SYSTEMD_WORKER:-chom-worker}
CHOM_SYSTEMD_NOTIFY=${CHOM_SYSTEMD_NOTIFY:-chom-notify}

RELEASES=$CHOM_ROOT/releases
CURRENT=$CHOM_ROOT/current
RUN=$CHOM_ROOT/run
LOGS=$CHOM_ROOT/logs
BACKUPS=${CHOM_BACKUP_DIR:-$CHOM_ROOT/backups}
REQUIRED_ENV=(SECRET_KEY DATABASE_URL REDIS_URL ALLOWED_HOSTS FIELD_ENCRYPTION_KEY)

# Deploy state, read by the EXIT trap.
PHASE=idle           # idle | building | switched | finished
STEP="" STEP_START=0 DEPLOY_START=0
RELEASE_ID="" RELEASE_DIR="" PREVIOUS_ID="" CANARY_PID=""

# --- output -------------------------------------------------------------------------------------
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
secs_since() { local d=$(( $(now_us) - $1 )); printf '%d.%01ds' $(( d / 1000000 )) $(( d % 1000000 / 100000 )); }
say() { printf '%s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

step() {
    STEP=$1
    shift
    STEP_START=$(now_us)
    say "==> $STEP"
    "$@"
    say "    ok ($(secs_since "$STEP_START"))"
}

# --- environment --------------------------------------------------------------------------------
# KEY=value lines (systemd EnvironmentFile / docker env_file syntax); values are never evaluated
# by the shell, so secrets may hold any character.
load_env_file() {
    local line key value
    [[ -r $CHOM_ENV_FILE ]] || die "env file $CHOM_ENV_FILE is not readable (set CHOM_ENV_FILE)"
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        [[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] ||
            die "$CHOM_ENV_FILE: not a KEY=value line: ${line%%=*}"
        key=${BASH_REMATCH[1]}
        value=${BASH_REMATCH[2]}
        if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
        export "$key=$value"
    done <"$CHOM_ENV_FILE"
    export DJANGO_SETTINGS_MODULE=chom.settings.production
}

check_env() {
    local name missing=()
    for name in "${REQUIRED_ENV[@]}"; do
        local file_var="${name}_FILE"
        [[ -n ${!name:-} || -n ${!file_var:-} ]] || missing+=("$name")
    done
    (( ${#missing[@]} == 0 )) || die "missing in $CHOM_ENV_FILE: ${missing[*]}"
    say "    $CHOM_ENV_FILE has ${REQUIRED_ENV[*]}"
}

url_decode() { printf '%b' "${1//%/\\x}"; }

# The password goes to libpq / redis-cli through the environment, never onto a command line (ps).
# libpq understands postgres:// and postgresql://; django-environ also accepts these aliases.
pg_url() {
    local u=$DATABASE_URL
    [[ $u =~ ^(psql|pgsql|postgis):// ]] && u="postgresql://${u#*://}"
    if [[ $u =~ ^([a-z]+://)([^:/@]*):([^@]*)@(.*)$ ]]; then
        PGPASSWORD=$(url_decode "${BASH_REMATCH[3]}")
        export PGPASSWORD
        u="${BASH_REMATCH[1]}${BASH_REMATCH[2]}@${BASH_REMATCH[4]}"
    fi
    echo "$u"
}

redis_cli() {
    local u=$REDIS_URL args=()
    [[ $u == rediss://* ]] && args+=(--tls)
    if [[ $u =~ ^(rediss?://)([^:/@]*):([^@]*)@(.*)$ ]]; then
        [[ -n ${BASH_REMATCH[2]} ]] && args+=(--user "$(url_decode "${BASH_REMATCH[2]}")")
        u="${BASH_REMATCH[1]}${BASH_REMATCH[4]}"
        REDISCLI_AUTH=$(url_decode "${BASH_REMATCH[3]}") timeout 5 redis-cli "${args[@]}" -u "$u" "$@"
    else
        timeout 5 redis-cli "${args[@]}" -u "$u" "$@"
    fi
}

web_bind() { local b=${CHOM_BIND:-127.0.0.1:8000}; echo "${b%%,*}"; }

# GET /health the way nginx forwards it; prints "<status> <body>" (status 000: no answer).
health_get() {
    local bind host out url_args=()
    bind=$(web_bind)
    host=${ALLOWED_HOSTS%%,*}
    host=${host#.}
    [[ $host == "*" || -z $host ]] && host=localhost
    if [[ $bind == unix:* ]]; then
        url_args=(--unix-socket "${bind#unix:}" "http://localhost/health")
    else
        url_args=("http://$bind/health")
    fi
    # With METRICS_TOKEN, /health also says why a check is down; the token goes through a file
    # descriptor (in the same command, so it is still open), never into curl's argv (ps).
    local headers=(-H "Host: $host" -H "X-Forwarded-Proto: https")
    if [[ -n ${METRICS_TOKEN:-} ]]; then
        out=$(curl -s --max-time 3 -w '\n%{http_code}' "${headers[@]}" \
            -H @<(printf 'Authorization: Bearer %s\n' "$METRICS_TOKEN") "${url_args[@]}" 2>/dev/null) || true
    else
        out=$(curl -s --max-time 3 -w '\n%{http_code}' "${headers[@]}" "${url_args[@]}" 2>/dev/null) || true
    fi
    local body=${out%$'\n'*}
    body=${body//$'\n'/ }
    echo "${out##*$'\n'} ${body:0:1500}"
}

healthy() { local r; r=$(health_get); [[ $r == 200\ * && $r == *'"status": "ok"'* ]]; }

wait_healthy() {
    local deadline=$(( SECONDS + CHOM_HEALTH_TIMEOUT )) last=""
    while (( SECONDS < deadline )); do
        last=$(health_get)
        if [[ $last == 200\ * && $last == *'"status": "ok"'* ]]; then
            say "    /health: $last"
            return 0
        fi
        sleep 1
    done
    say "    /health did not become healthy within ${CHOM_HEALTH_TIMEOUT}s; last answer: ${last:-none}"
    return 1
}

# --- pre-checks ---------------------------------------------------------------------------------
check_target() {
    mkdir -p "$RELEASES" "$RUN" "$LOGS" "$BACKUPS"
    [[ -w $RELEASES ]] || die "$RELEASES is not writable by $(id -un)"
    for tool in git tar curl psql pg_dump redis-cli flock; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    command -v "$CHOM_PYTHON" >/dev/null || die "$CHOM_PYTHON not found (set CHOM_PYTHON)"
    "$CHOM_PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
        die "$CHOM_PYTHON is not Python 3.11"
    # Units are not updated by a deploy: without chom-notify@ no worker would consume `notify`, and
    # the new worker's start would wait for its heartbeat in vain after the switch.
    if [[ $CHOM_SERVICE_MANAGER == systemd ]] && ! systemctl cat "$CHOM_SYSTEMD_NOTIFY@check.service" >/dev/null 2>&1; then
        die "$CHOM_SYSTEMD_NOTIFY@.service is not installed: copy deploy/systemd/*.service to /etc/systemd/system/ and run systemctl daemon-reload (deploy/README.md)"
    fi
    if [[ -L $CURRENT ]]; then
        local r
        r=$(health_get)
        say "    current: $(basename "$(readlink "$CURRENT")"); /health answers ${r:-nothing}"
    else
        say "    no current release: first deploy into $CHOM_ROOT"
    fi
}

check_disk() {
    local free_mb
    free_mb=$(df -Pm "$CHOM_ROOT" | awk 'NR == 2 { print $4 }')
    (( free_mb >= CHOM_MIN_FREE_MB )) || die "only ${free_mb} MB free on $CHOM_ROOT, need ${CHOM_MIN_FREE_MB} MB"
    say "    ${free_mb} MB free (need ${CHOM_MIN_FREE_MB})"
}

check_database() { PGCONNECT_TIMEOUT=5 psql "$(pg_url)" -XAtqc 'select 1' >/dev/null; }

check_redis() {
    local pong
    pong=$(redis_cli ping 2>/dev/null) || true
    [[ $pong == PONG ]] || die "redis at REDIS_URL does not answer PING: $pong"
}

resolve_commit() {
    if [[ $CHOM_FETCH == 1 ]]; then
        git -C "$CHOM_REPO" fetch --quiet --prune origin
    fi
    COMMIT=$(git -C "$CHOM_REPO" rev-parse --verify --quiet "${CHOM_REF}^{commit}") ||
        die "$CHOM_REF is not a commit in $CHOM_REPO"
    say "    $CHOM_REF = $COMMIT"
    if ! git -C "$CHOM_REPO" diff --quiet HEAD "$COMMIT" -- deploy/deploy.sh deploy/bin 2>/dev/null; then
        say "    note: deploy/ changes in $COMMIT; this run uses the script checked out in $CHOM_REPO"
    fi
}

current_commit() { cat "$CURRENT/REVISION" 2>/dev/null || true; }

# --- build --------------------------------------------------------------------------------------
export_code() {
    mkdir -p "$RELEASE_DIR"
    git -C "$CHOM_REPO" archive --format=tar "$COMMIT" | tar -x -C "$RELEASE_DIR"
}

build_venv() {
    local dir=$1 pip_args=(--quiet --disable-pip-version-check)
    [[ -n $CHOM_WHEELHOUSE ]] && pip_args+=(--no-index --find-links "$CHOM_WHEELHOUSE")
    "$CHOM_PYTHON" -m venv "$dir"
    "$dir/bin/pip" install "${pip_args[@]}" -r "$RELEASE_DIR/requirements.txt"
}

install_venv() {
    if [[ $CHOM_SHARE_VENVS != 1 ]]; then
        build_venv "$RELEASE_DIR/venv"
        return
    fi
    local key dir
    key=$( { cat "$RELEASE_DIR/requirements.txt"; "$CHOM_PYTHON" -VV; } | sha256sum | cut -c1-16)
    dir=$CHOM_ROOT/venvs/$key
    if [[ -e $dir/.complete ]]; then
        say "    reusing $dir (same requirements.txt and Python)"
    else
        rm -rf "$dir"
        build_venv "$dir"
        touch "$dir/.complete"
    fi
    ln -s "../../venvs/$key" "$RELEASE_DIR/venv"
}

manage() { (cd "$RELEASE_DIR" && STATIC_ROOT="$RELEASE_DIR/static" "$RELEASE_DIR/venv/bin/python" manage.py "$@"); }

indent() { sed 's/^/    /'; }
collect_static() { manage collectstatic --noinput -v 0; }
check_deploy() { manage check --deploy --fail-level "$CHOM_CHECK_FAIL_LEVEL" 2>&1 | indent; }
show_plan() { manage migrate --plan | indent; }

backup_database() {
    local file=$BACKUPS/db-$RELEASE_ID.dump
    pg_dump --format=custom --compress=6 --no-owner --file="$file.partial" "$(pg_url)"
    mv "$file.partial" "$file"
    say "    $file ($(du -h "$file" | cut -f1))"
}

migrate() { manage migrate --noinput | indent; }

free_port() { "$CHOM_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# True when a /health answer ("<status> <json>") has every check ok; "workers" may be down when
# ALLOW_NO_WORKERS=1 (a first deploy: no worker runs yet when the canary asks).
health_checks_ok() {
    "$CHOM_PYTHON" -c '
import json, sys
try:
    checks = json.loads(sys.argv[1].split(" ", 1)[1])["checks"]
except (IndexError, ValueError, KeyError, TypeError):
    sys.exit(1)
sys.exit(any(v != "ok" and not (k == "workers" and sys.argv[2] == "1") for k, v in checks.items()))
' "$1" "$2"
}

# Boot the new release on a spare port and ask its /health before it takes any traffic: a
# release that cannot import, reach the database or the broker, or fails any check of its own
# never becomes `current`.
canary() {
    local port answer="" deadline allow_no_workers=0
    [[ -L $CURRENT ]] || allow_no_workers=1
    port=$(free_port)
    (cd "$RELEASE_DIR" && exec 9>&- && exec setsid "$RELEASE_DIR/venv/bin/python" "$RELEASE_DIR/venv/bin/gunicorn" \
        -c "$RELEASE_DIR/deploy/gunicorn.conf.py" --bind "127.0.0.1:$port" --workers 1 \
        >"$LOGS/canary.log" 2>&1 </dev/null) &
    CANARY_PID=$!
    deadline=$(( SECONDS + CHOM_CANARY_TIMEOUT ))
    until health_checks_ok "$answer" "$allow_no_workers"; do
        if (( SECONDS >= deadline )) || ! kill -0 "$CANARY_PID" 2>/dev/null; then
            stop_canary
            say "    the new release is not healthy on its own: ${answer:-no answer}"
            tail -n 20 "$LOGS/canary.log" | indent
            return 1
        fi
        sleep 0.3
        answer=$(CHOM_BIND=127.0.0.1:$port health_get)
    done
    stop_canary
    say "    /health on the new release: $answer"
}

stop_canary() {
    [[ -n $CANARY_PID ]] || return 0
    kill -TERM -- "-$CANARY_PID" 2>/dev/null || true
    wait "$CANARY_PID" 2>/dev/null || true
    CANARY_PID=""
}

# --- switch -------------------------------------------------------------------------------------
switch_to() {
    ln -sfn "releases/$1" "$CHOM_ROOT/.current.tmp"
    mv -T "$CHOM_ROOT/.current.tmp" "$CURRENT"
    say "    current -> releases/$1"
}

# Workers are per release (node names worker-<release>, consuming default,remote, and
# notify-<release>, consuming notify: tenants' notification receivers, which may hang, never hold
# a deploy's worker slot): the new pair starts and proves itself (heartbeat rows, which /health
# reads) before the old one gets a warm shutdown (TERM: running tasks finish; unstarted acks_late
# messages go back to the queue). /health never sees a gap.
worker_heartbeat_fresh() {
    local n
    n=$(PGCONNECT_TIMEOUT=5 psql "$(pg_url)" -XAtqc "select count(distinct split_part(hostname, '-', 1))
        from chom_workerheartbeat where (hostname like 'worker-$1@%' or hostname like 'notify-$1@%')
        and last_seen > now() - interval '60 seconds'" 2>/dev/null) || return 1
    [[ $n -ge 2 ]]
}

# --- service manager seam: local (pidfiles under run/) or systemd -------------------------------
pid_of() { local p; p=$(cat "$1" 2>/dev/null) || return 1; [[ -n $p ]] && kill -0 "$p" 2>/dev/null && echo "$p"; }

wait_gone() {
    local pid=$1 timeout=$2 deadline=$(( SECONDS + $2 ))
    while kill -0 "$pid" 2>/dev/null; do
        if (( SECONDS >= deadline )); then
            say "    process $pid still running after ${timeout}s: killing its group"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            return 0
        fi
        sleep 0.2
    done
}

local_spawn() {   # local_spawn LOG DIR ARGV... : own session, survives this script
    local log=$1 dir=$2
    shift 2
    # fd 9 holds the deploy lock: a long-lived child must not inherit it.
    (cd "$dir" && exec 9>&- && exec setsid "$@" >>"$log" 2>&1 </dev/null) &
    SPAWNED_PID=$!
}

local_web_start() {
    local deadline=$(( SECONDS + 60 )) pid=""
    rm -f "$RUN/web.pid" "$RUN/web.pid".ready.*
    local_spawn "$LOGS/web.log" "$CHOM_ROOT" "$CURRENT/venv/bin/python" "$CURRENT/venv/bin/gunicorn" \
        -c "$CURRENT/deploy/gunicorn.conf.py" --pid "$RUN/web.pid"
    until [[ -n $pid && -e $RUN/web.pid.ready.$pid ]]; do
        pid=$(cat "$RUN/web.pid" 2>/dev/null || true)
        kill -0 "$SPAWNED_PID" 2>/dev/null || { tail -n 20 "$LOGS/web.log" | indent; return 1; }
        (( SECONDS < deadline )) || { say "    gunicorn did not get ready within 60s"; return 1; }
        sleep 0.1
    done
    say "    gunicorn master $pid serving on $(web_bind)"
}

web_reload() {
    if [[ $CHOM_SERVICE_MANAGER == systemd ]]; then
        if systemctl is-active --quiet "$CHOM_SYSTEMD_WEB"; then
            systemctl reload "$CHOM_SYSTEMD_WEB"
        else
            systemctl enable --quiet --now "$CHOM_SYSTEMD_WEB"
        fi
    elif pid_of "$RUN/web.pid" >/dev/null; then
        "$SCRIPT_DIR/bin/chom-web-reload" "$RUN/web.pid" | indent
    else
        local_web_start
    fi
}

worker_running() {
    if [[ $CHOM_SERVICE_MANAGER == systemd ]]; then
        systemctl is-active --quiet "$CHOM_SYSTEMD_WORKER@$1"
    else
        pid_of "$RUN/worker-$1.pid" >/dev/null || pid_of "$RUN/notify-$1.pid" >/dev/null
    fi
}

worker_start() {   # worker_start RELEASE_ID: start it, wait for its heartbeat
    local id=$1 deadline=$(( SECONDS + CHOM_WORKER_TIMEOUT )) dir
    dir=$RELEASES/$1
    SPAWNED_PID=""
    if [[ $CHOM_SERVICE_MANAGER == systemd ]]; then
        # chom-worker@ wants chom-notify@ of the same release (and stops it with itself).
        systemctl enable --quiet --now "$CHOM_SYSTEMD_WORKER@$id"
    else
        pid_of "$RUN/notify-$id.pid" >/dev/null ||
            local_spawn "$LOGS/notify-$id.log" "$dir" "$dir/venv/bin/python" -m celery -A chom worker \
                -Q notify --concurrency "$CHOM_NOTIFY_CONCURRENCY" --loglevel INFO \
                -n "notify-$id@%h" --pidfile "$RUN/notify-$id.pid"
        SPAWNED_PID=""
        pid_of "$RUN/worker-$id.pid" >/dev/null ||
            local_spawn "$LOGS/worker-$id.log" "$dir" "$dir/venv/bin/python" -m celery -A chom worker \
                -Q default,remote --concurrency "$CHOM_WORKER_CONCURRENCY" --loglevel INFO \
                -n "worker-$id@%h" --pidfile "$RUN/worker-$id.pid"
    fi
    until worker_heartbeat_fresh "$id"; do
        if [[ $CHOM_SERVICE_MANAGER == systemd ]]; then
            ! systemctl is-failed --quiet "$CHOM_SYSTEMD_WORKER@$id" || { say "    worker-$id failed"; return 1; }
            ! systemctl is-failed --quiet "$CHOM_SYSTEMD_NOTIFY@$id" || { say "    notify-$id failed"; return 1; }
        elif [[ -n ${SPAWNED_PID:-} ]] && ! kill -0 "$SPAWNED_PID" 2>/dev/null && ! worker_running "$id"; then
            say "    worker-$id exited:"
            tail -n 15 "$LOGS/worker-$id.log" | indent
            return 1
        fi
        if (( SECONDS >= deadline )); then
            say "    worker-$id and notify-$id did not both send a heartbeat within ${CHOM_WORKER_TIMEOUT}s"
            [[ $CHOM_SERVICE_MANAGER == systemd ]] || tail -n 15 "$LOGS/notify-$id.log" | indent
            return 1
        fi
        sleep 0.3
    done
    say "    worker-$id is consuming default,remote; notify-$id is consuming notify"
}

running_worker_ids() {
    if [[ $CHOM_SERVICE_MANAGER == systemd ]]; then
        systemctl list-units --plain --no-legend --state=active,activating,reloading "$CHOM_SYSTEMD_WORKER@*" |
            awk '{ print $1 }' | sed -e "s/^$CHOM_SYSTEMD_WORKER@//" -e 's/\.service$//'
    else
        local f
        for f in "$RUN"/worker-*.pid "$RUN"/notify-*.pid; do
            [[ -e $f ]] || continue
            if pid_of "$f" >/dev/null; then basename "$f" .pid | sed 's/^[a-z]*-//'; else rm -f "$f"; fi
        done | sort -u
    fi
}

workers_stop_except() {   # warm shutdown of every worker but RELEASE_ID's
    local id pid
    for id in $(running_worker_ids); do
        [[ $id == "$1" ]] && continue
        if [[ $CHOM_SERVICE_MANAGER == systemd ]]; then
            # TimeoutStopSec in the unit bounds it; --no-block lets long tasks finish after we exit.
            systemctl disable --quiet "$CHOM_SYSTEMD_WORKER@$id"
            systemctl stop --no-block "$CHOM_SYSTEMD_WORKER@$id"
            say "    worker-$id: warm shutdown requested"
        else
            local name
            for name in worker notify; do
                pid=$(pid_of "$RUN/$name-$id.pid") || continue
                kill -TERM "$pid"
                wait_gone "$pid" "$CHOM_WORKER_STOP_TIMEOUT"
                rm -f "$RUN/$name-$id.pid"
                say "    $name-$id stopped (warm shutdown)"
            done
        fi
    done
}

beat_restart() {
    if [[ $CHOM_SERVICE_MANAGER == systemd ]]; then
        systemctl enable --quiet "$CHOM_SYSTEMD_BEAT"
        systemctl restart "$CHOM_SYSTEMD_BEAT"
        # Never a bare `return` here: in the EXIT trap's rollback it would return the status of the
        # command that failed the deploy (bash), and a good rollback would report itself failed.
        return "$?"
    fi
    local pid
    if pid=$(pid_of "$RUN/beat.pid"); then
        kill -TERM "$pid"
        wait_gone "$pid" 30
    fi
    rm -f "$RUN/beat.pid"
    local dir
    dir=$(readlink -f "$CURRENT")
    local_spawn "$LOGS/beat.log" "$dir" "$dir/venv/bin/python" -m celery -A chom beat --loglevel INFO \
        --pidfile "$RUN/beat.pid" --schedule "$RUN/celerybeat-schedule"
    local deadline=$(( SECONDS + 30 ))
    until pid_of "$RUN/beat.pid" >/dev/null; do
        kill -0 "$SPAWNED_PID" 2>/dev/null || { tail -n 15 "$LOGS/beat.log" | indent; return 1; }
        (( SECONDS < deadline )) || { say "    beat wrote no pidfile within 30s"; return 1; }
        sleep 0.2
    done
    say "    beat $(cat "$RUN/beat.pid") running $(basename "$dir")"
}

services_switch() {   # services_switch RELEASE_ID: make web, workers and beat run it
    step "reload web (graceful, new master from current)" web_reload
    step "start worker-$1" worker_start "$1"
    step "stop other workers (warm shutdown)" workers_stop_except "$1"
    step "restart beat" beat_restart
}

local_stop_all() {
    local f pid
    for f in "$RUN"/web.pid "$RUN"/worker-*.pid "$RUN"/notify-*.pid "$RUN"/beat.pid; do
        pid=$(pid_of "$f") || { rm -f "$f"; continue; }
        kill -TERM "$pid"
        wait_gone "$pid" 60
        rm -f "$f"
        say "    stopped $(basename "$f" .pid) ($pid)"
    done
    rm -f "$RUN"/web.pid.*
}

# --- housekeeping -------------------------------------------------------------------------------
release_ids() { find "$RELEASES" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort; }

prune() {
    local keep current id n=0 kept=() removed=0 all=() old_backups=()
    current=$(basename "$(readlink "$CURRENT")")
    mapfile -t all < <(release_ids | sort -r)
    for id in "${all[@]}"; do
        if [[ $id == "$current" ]] || { [[ -e $RELEASES/$id/REVISION ]] && (( n < CHOM_KEEP_RELEASES )); }; then
            kept+=("$id")
            (( ++n ))
        elif ! worker_running "$id"; then
            rm -rf "${RELEASES:?}/$id"
            (( ++removed ))
        fi
    done
    if [[ -d $CHOM_ROOT/venvs ]]; then
        for keep in "$CHOM_ROOT"/venvs/*; do
            [[ -e $keep ]] || continue
            grep -qx "../../venvs/$(basename "$keep")" < <(for id in "${kept[@]}"; do readlink "$RELEASES/$id/venv" || true; done) ||
                rm -rf "$keep"
        done
    fi
    # Names carry the release's UTC timestamp: sorted by name is sorted by age.
    mapfile -t old_backups < <(find "$BACKUPS" -maxdepth 1 -name 'db-*.dump' | sort | head -n "-$CHOM_KEEP_BACKUPS")
    (( ${#old_backups[@]} == 0 )) || rm -f "${old_backups[@]}"
    say "    kept ${#kept[@]} releases, removed $removed, removed ${#old_backups[@]} old backups"
}

# --- failure handling ---------------------------------------------------------------------------
rollback_to() {   # rollback_to RELEASE_ID: best effort, every step reported
    local id=$1 ok=0 action
    set +e
    say "==> rollback to $id"
    stop_canary
    # Release ids hold no blanks: each action splits into a function and its argument.
    for action in "switch_to $id" web_reload "worker_start $id" "workers_stop_except $id" beat_restart wait_healthy; do
        $action || { say "    rollback step '${action%% *}' failed (exit $?)"; ok=1; }
    done
    set -e
    return "$ok"
}

on_exit() {
    local rc=$?
    stop_canary
    (( rc == 0 )) && return 0
    [[ -z $STEP ]] || say "FAILED: step '$STEP' (after $(secs_since "$STEP_START"), exit $rc)"
    case $PHASE in
        building)
            rm -rf "${RELEASE_DIR:?}"
            say "nothing was switched: $(basename "$(readlink "$CURRENT" 2>/dev/null || echo none)") keeps serving"
            ;;
        switched)
            if [[ -z $PREVIOUS_ID ]]; then
                say "first deploy failed after the switch; there is no previous release to return to"
            else
                local started
                started=$(now_us)
                if rollback_to "$PREVIOUS_ID"; then
                    say "ROLLED BACK to $PREVIOUS_ID in $(secs_since "$started"); release $RELEASE_ID removed"
                    rm -rf "${RELEASE_DIR:?}"
                else
                    say "ROLLBACK to $PREVIOUS_ID did not come back healthy: needs an operator"
                fi
            fi
            ;;
    esac
    exit "$rc"
}

# --- commands -----------------------------------------------------------------------------------
prechecks() {
    step "target $CHOM_ROOT ($CHOM_SERVICE_MANAGER)" check_target
    step "free disk" check_disk
    step "environment" check_env
    step "database reachable" check_database
    step "redis reachable" check_redis
    step "source" resolve_commit
}

cmd_deploy() {
    DEPLOY_START=$(now_us)
    load_env_file
    prechecks
    if [[ $(current_commit) == "$COMMIT" ]] && healthy; then
        say "$COMMIT is already current ($(basename "$(readlink "$CURRENT")")) and healthy: nothing to do"
        return 0
    fi
    PREVIOUS_ID=$( [[ -L $CURRENT ]] && basename "$(readlink "$CURRENT")" || true)
    RELEASE_ID="$(date -u +%Y%m%dT%H%M%SZ)-${COMMIT:0:12}"
    RELEASE_DIR=$RELEASES/$RELEASE_ID
    [[ ! -e $RELEASE_DIR ]] || die "$RELEASE_DIR already exists"
    PHASE=building
    step "export $COMMIT to releases/$RELEASE_ID" export_code
    step "virtualenv from requirements.txt" install_venv
    step "collectstatic" collect_static
    step "check --deploy" check_deploy
    step "migration plan" show_plan
    step "database backup (pg_dump)" backup_database
    step "migrate (must stay compatible with the running release)" migrate
    step "canary: the new release answers /health" canary
    echo "$COMMIT" >"$RELEASE_DIR/REVISION"
    PHASE=switched
    step "switch current" switch_to "$RELEASE_ID"
    services_switch "$RELEASE_ID"
    step "post-check /health (database, broker, workers)" wait_healthy
    PHASE=finished
    step "prune (keep $CHOM_KEEP_RELEASES releases)" prune
    say "DEPLOYED $RELEASE_ID in $(secs_since "$DEPLOY_START")"
}

cmd_rollback() {
    local current target=""
    load_env_file
    [[ -L $CURRENT ]] || die "nothing is deployed in $CHOM_ROOT"
    current=$(basename "$(readlink "$CURRENT")")
    target=$(release_ids | awk -v c="$current" '$0 < c' | tail -n 1)
    [[ -n $target && -e $RELEASES/$target/REVISION ]] || die "no release before $current to roll back to"
    DEPLOY_START=$(now_us)
    step "manual rollback $current -> $target" rollback_to "$target"
    say "ROLLED BACK to $target in $(secs_since "$DEPLOY_START")"
}

cmd_status() {
    load_env_file
    say "current: $(readlink "$CURRENT" 2>/dev/null || echo none) ($(current_commit))"
    say "releases:"
    release_ids | sed 's/^/  /'
    say "workers: $(running_worker_ids | tr '\n' ' ')"
    say "/health: $(health_get)"
}

cmd_stop() {
    [[ $CHOM_SERVICE_MANAGER == local ]] || die "stop is for local mode; use systemctl stop chom-web chom-beat 'chom-worker@*'"
    step "stop local processes" local_stop_all
}

main() {
    local command=deploy
    while (( $# )); do
        case $1 in
            deploy | rollback | status | stop) command=$1 ;;
            --ref) CHOM_REF=${2:?--ref needs a value}; shift ;;
            --fetch) CHOM_FETCH=1 ;;
            -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; return 0 ;;
            *) die "unknown argument: $1" ;;
        esac
        shift
    done
    case $CHOM_SERVICE_MANAGER in systemd | local) ;; *) die "CHOM_SERVICE_MANAGER must be systemd or local" ;; esac
    mkdir -p "$CHOM_ROOT"
    if [[ $command != status ]]; then
        exec 9>"$CHOM_ROOT/.deploy.lock"
        flock -n 9 || die "another deploy is running on $CHOM_ROOT"
    fi
    trap on_exit EXIT
    "cmd_$command"
}

main "$@"
