# Starts throwaway PostgreSQL and MariaDB servers on 127.0.0.1, for
# tests/run and tests/bench (sourced, not run). Installs them from Debian's
# packages if they are missing. Exports GLEMSEL_TEST_PG_URL and
# GLEMSEL_TEST_MYSQL_URL; the servers stop and their data goes on exit.
#
# GLEMSEL_DURABLE=1 starts them with durable commits and larger caches, as
# production runs them (for benchmarks); otherwise durability is off.

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        log "need root to install $*; install it or run as root"
        exit 1
    fi
    log "installing $* from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

work=$(mktemp -d /tmp/glemsel-test.XXXXXX)
chmod 755 "$work"
stoppers=()
cleanup() {
    local status=$?
    for stop in "${stoppers[@]}"; do eval "$stop" || true; done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT INT TERM

# --- PostgreSQL -------------------------------------------------------------
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_install postgresql
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
# PostgreSQL will not run as root; the Debian package creates a postgres user.
as_pg=()
if [ "$(id -u)" = 0 ]; then
    as_pg=(runuser -u postgres --)
    mkdir -p "$work/pg" && chown postgres "$work/pg"
fi
pg_port=$(free_port)
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$work/pg/initdb.log" 2>&1 \
    || { cat "$work/pg/initdb.log" >&2; exit 1; }
if [ "${GLEMSEL_DURABLE:-}" = 1 ]; then
    pg_settings="-c shared_buffers=2GB -c max_wal_size=8GB -c checkpoint_timeout=30min"
else
    pg_settings="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $work/pg -c max_connections=300 $pg_settings" \
    start >/dev/null || { cat "$work/pg/server.log" >&2; exit 1; }
stoppers+=("\"\${as_pg[@]}\" \"$pg_bin/pg_ctl\" -D \"$work/pg/data\" -m immediate stop >/dev/null 2>&1")
export GLEMSEL_TEST_PG_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
# Crashes the server (immediate stop: no checkpoint, as a power cut) and
# starts it again, for the fault tests.
{
    printf '#!/usr/bin/env bash\nset -e\n'
    printf '%q ' "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate stop; printf '>/dev/null\n'
    printf '%q ' "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $work/pg -c max_connections=300 $pg_settings" start
    printf '>/dev/null\n'
} >"$work/pg-crash-restart"
chmod +x "$work/pg-crash-restart"
export GLEMSEL_TEST_PG_CRASH="$work/pg-crash-restart"
# The server's log, which tests search for secrets (they turn on statement
# logging for their own databases).
export GLEMSEL_TEST_PG_LOG="$work/pg/server.log"
log "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"

# --- MariaDB ----------------------------------------------------------------
find_bin() { for name in "$@"; do for dir in /usr/sbin /usr/bin /usr/local/bin; do
    [ -x "$dir/$name" ] && { echo "$dir/$name"; return; }; done; done; }
if [ -z "$(find_bin mariadbd mysqld)" ]; then
    apt_install mariadb-server
fi
my_server=$(find_bin mariadbd mysqld)
my_install=$(find_bin mariadb-install-db mysql_install_db)
my_client=$(find_bin mariadb mysql)
my_admin=$(find_bin mariadb-admin mysqladmin)
mkdir -p "$work/my"
as_mysql=()
if [ "$(id -u)" = 0 ]; then
    as_mysql=(--user=mysql)
    chown mysql:mysql "$work/my"
fi
my_port=$(free_port)
if [ "${GLEMSEL_DURABLE:-}" = 1 ]; then
    # As production runs it: every commit durable, in the redo log and in
    # the binary log replicas read.
    my_settings=(--innodb-flush-log-at-trx-commit=1 --innodb-buffer-pool-size=4G --innodb-log-file-size=1G
        --log-bin="$work/my/binlog" --sync-binlog=1 --binlog-format=ROW)
else
    # Every log a DBA might keep is on, so tests can prove that no secret
    # reaches one: the binary log (MIXED, with the statement text annotated
    # to row events), the general log and the slow log of every statement.
    my_settings=(--innodb-flush-log-at-trx-commit=2 --innodb-buffer-pool-size=128M
        --log-bin="$work/my/binlog" --binlog-format=MIXED --binlog-annotate-row-events=ON
        --general-log=1 --general-log-file="$work/my/general.log"
        --slow-query-log=1 --slow-query-log-file="$work/my/slow.log" --long-query-time=0)
fi
"$my_install" "${as_mysql[@]}" --datadir="$work/my/data" --auth-root-authentication-method=normal \
    --skip-test-db >"$work/my/install.log" 2>&1 || { cat "$work/my/install.log" >&2; exit 1; }
"$my_server" "${as_mysql[@]}" --datadir="$work/my/data" --socket="$work/my/sock" --port="$my_port" \
    --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$work/my/pid" --log-error="$work/my/error.log" \
        "${my_settings[@]}" --max-connections=300 \
    >/dev/null 2>&1 &
stoppers+=("\"$my_admin\" --socket=\"$work/my/sock\" -uroot shutdown >/dev/null 2>&1")
for _ in $(seq 1 120); do
    "$my_admin" --socket="$work/my/sock" -uroot ping >/dev/null 2>&1 && break
    sleep 0.5
done
"$my_admin" --socket="$work/my/sock" -uroot ping >/dev/null 2>&1 || { cat "$work/my/error.log" >&2; exit 1; }
"$my_client" --socket="$work/my/sock" -uroot -e \
    "CREATE USER 'glemsel'@'127.0.0.1' IDENTIFIED BY 'glemsel'; GRANT ALL ON *.* TO 'glemsel'@'127.0.0.1' WITH GRANT OPTION;"
export GLEMSEL_TEST_MYSQL_URL="mysql://glemsel:glemsel@127.0.0.1:$my_port/"
# Kills the server (SIGKILL, as a crash) and starts it again, for the fault
# tests.
{
    printf '#!/usr/bin/env bash\nset -e\n'
    printf 'kill -9 "$(cat %q)"\n' "$work/my/pid"
    printf 'while %q --socket=%q -uroot ping >/dev/null 2>&1; do sleep 0.1; done\n' "$my_admin" "$work/my/sock"
    printf 'sleep 0.5\n'
    printf 'setsid '; printf '%q ' "$my_server" "${as_mysql[@]}" --datadir="$work/my/data" --socket="$work/my/sock" \
        --port="$my_port" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$work/my/pid" \
        --log-error="$work/my/error.log" "${my_settings[@]}" --max-connections=300
    printf '>/dev/null 2>&1 </dev/null &\n'
    printf 'for _ in $(seq 1 240); do %q --socket=%q -uroot ping >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1\n' \
        "$my_admin" "$work/my/sock"
} >"$work/my-crash-restart"
chmod +x "$work/my-crash-restart"
export GLEMSEL_TEST_MYSQL_CRASH="$work/my-crash-restart"
# The binary, general and slow logs, which tests search for secrets.
export GLEMSEL_TEST_MYSQL_LOGS="$work/my"
log "MariaDB $("$my_client" --socket="$work/my/sock" -uroot -N -e 'SELECT VERSION()') on 127.0.0.1:$my_port"

# --- faketime, for the tests of clocks that disagree --------------------------
if ! command -v faketime >/dev/null 2>&1; then
    apt_install faketime
fi

# --- chromium, which renders the HTML report headless ------------------------
if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium
fi

# --- systemd-analyze, for the unit tests ------------------------------------
if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt_install systemd
fi


# --- pt-archiver, which the benchmark (and its smoke run) compares with ------
if ! command -v pt-archiver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt_install percona-toolkit
    else
        log "pt-archiver is missing and installing it needs root; the benchmark fails without it unless GLEMSEL_TEST_SKIP_SERVERS=1"
    fi
fi
