# Starts throwaway PostgreSQL and MariaDB servers on 127.0.0.1, for
# tests/run and tests/bench (sourced, not run). Installs them from Debian's
# packages if they are missing. Exports GLEMSEL_TEST_PG_URL and
# GLEMSEL_TEST_MYSQL_URL; the servers stop and their data goes on exit.
#
# Both servers offer TLS (optional: plain connections work as before) with a
# certificate for localhost and 127.0.0.1 from a throwaway CA, and listen on
# 127.0.0.2 too, an address the certificate does not name. A second server
# of each, copied from the first before it started, offers no TLS at all.
# For tests/tls.rs: GLEMSEL_TEST_CA_FILE (the CA), GLEMSEL_TEST_OTHER_CA_FILE
# (a CA that signed nothing here), GLEMSEL_TEST_UNNAMED_HOST (127.0.0.2),
# GLEMSEL_TEST_PG_PLAIN_URL and GLEMSEL_TEST_MYSQL_PLAIN_URL.
#
# A replica of each, for tests/replica_lag.rs: a PostgreSQL streaming
# replica of the plain server, a MariaDB replica of the main one
# (GLEMSEL_TEST_{PG,MYSQL}_REPLICA_URL), each with a script that stops or
# starts it (GLEMSEL_TEST_{PG,MYSQL}_REPLICA_CTL stop|start).
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

# --- TLS: a throwaway CA, a server certificate, and a CA that signed nothing --
if ! command -v openssl >/dev/null 2>&1; then
    apt_install openssl
fi
tls="$work/tls"
mkdir -p "$tls"
new_ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=$2" -keyout "$tls/$1.key" -out "$tls/$1.pem" 2>/dev/null
}
new_ca ca "glemsel test CA"
new_ca other-ca "glemsel unrelated CA"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf '%s\n' "basicConstraints = CA:FALSE" "keyUsage = digitalSignature" \
    "extendedKeyUsage = serverAuth" "subjectAltName = DNS:localhost, IP:127.0.0.1" >"$tls/server.ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
chmod 644 "$tls"/*.pem
export GLEMSEL_TEST_CA_FILE="$tls/ca.pem"
export GLEMSEL_TEST_OTHER_CA_FILE="$tls/other-ca.pem"
# The servers listen here too; their certificate does not name it.
export GLEMSEL_TEST_UNNAMED_HOST=127.0.0.2

# --- PostgreSQL -------------------------------------------------------------
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_install postgresql
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
# PostgreSQL will not run as root; the Debian package creates a postgres user.
as_pg=()
pg_key_owner=()
if [ "$(id -u)" = 0 ]; then
    as_pg=(runuser -u postgres --)
    mkdir -p "$work/pg" && chown postgres "$work/pg"
    pg_key_owner=(-o postgres)
fi
pg_port=$(free_port)
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$work/pg/initdb.log" 2>&1 \
    || { cat "$work/pg/initdb.log" >&2; exit 1; }
# The server without TLS is a copy of the fresh cluster: cheaper than initdb.
cp -a "$work/pg/data" "$work/pg/plain"
# The server's key must belong to the server's user, readable by it alone.
install -m 0600 "${pg_key_owner[@]}" "$tls/server.key" "$work/pg/server.key"
pg_tls="-c ssl=on -c ssl_cert_file=$tls/server.pem -c ssl_key_file=$work/pg/server.key"
if [ "${GLEMSEL_DURABLE:-}" = 1 ]; then
    pg_settings="-c shared_buffers=4GB -c max_wal_size=8GB -c checkpoint_timeout=30min"
else
    pg_settings="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
# Also on 127.0.0.2, which the certificate does not name.
pg_options="-c listen_addresses=127.0.0.1,127.0.0.2 -p $pg_port -k $work/pg -c max_connections=300 $pg_settings $pg_tls"
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -t 60 -o "$pg_options" \
    start >/dev/null || { cat "$work/pg/server.log" >&2; exit 1; }
stoppers+=("\"\${as_pg[@]}\" \"$pg_bin/pg_ctl\" -D \"$work/pg/data\" -m immediate stop >/dev/null 2>&1")
export GLEMSEL_TEST_PG_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
# Crashes the server (immediate stop: no checkpoint, as a power cut) and
# starts it again, for the fault tests.
{
    printf '#!/usr/bin/env bash\nset -e\n'
    printf '%q ' "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate stop; printf '>/dev/null\n'
    printf '%q ' "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -t 60 \
        -o "$pg_options" start
    printf '>/dev/null\n'
} >"$work/pg-crash-restart"
chmod +x "$work/pg-crash-restart"
export GLEMSEL_TEST_PG_CRASH="$work/pg-crash-restart"
pg_plain_port=$(free_port)
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/plain" -l "$work/pg/plain.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_plain_port -k $work/pg -c ssl=off -c max_connections=20 -c shared_buffers=16MB -c fsync=off" \
    start >/dev/null || { cat "$work/pg/plain.log" >&2; exit 1; }
stoppers+=("\"\${as_pg[@]}\" \"$pg_bin/pg_ctl\" -D \"$work/pg/plain\" -m immediate stop >/dev/null 2>&1")
export GLEMSEL_TEST_PG_PLAIN_URL="postgresql://postgres@127.0.0.1:$pg_plain_port/postgres"
# A streaming replica of the plain server (the main one runs without
# full-page writes, which a base backup needs), for tests/replica_lag.rs:
# GLEMSEL_TEST_PG_REPLICA_URL, and GLEMSEL_TEST_PG_REPLICA_CTL stop|start.
"${as_pg[@]}" "$pg_bin/pg_basebackup" -h 127.0.0.1 -p "$pg_plain_port" -U postgres -D "$work/pg/replica" -R -X stream \
    >"$work/pg/basebackup.log" 2>&1 || { cat "$work/pg/basebackup.log" >&2; exit 1; }
pg_replica_port=$(free_port)
pg_replica_options="-c listen_addresses=127.0.0.1 -p $pg_replica_port -k $work/pg -c ssl=off -c max_connections=20 -c shared_buffers=16MB -c fsync=off -c hot_standby=on -c wal_receiver_status_interval=1s"
{
    printf '#!/usr/bin/env bash\nset -e\ncase "$1" in\n'
    printf 'stop) '; printf '%q ' "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/replica" -m fast -w stop; printf '>/dev/null ;;\n'
    printf 'start) '; printf '%q ' "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/replica" -l "$work/pg/replica.log" -w -t 60 \
        -o "$pg_replica_options" start; printf '>/dev/null ;;\n'
    printf '*) echo "usage: $0 stop|start" >&2; exit 2 ;;\nesac\n'
} >"$work/pg-replica"
chmod +x "$work/pg-replica"
"$work/pg-replica" start || { cat "$work/pg/replica.log" >&2; exit 1; }
stoppers+=("\"\${as_pg[@]}\" \"$pg_bin/pg_ctl\" -D \"$work/pg/replica\" -m immediate stop >/dev/null 2>&1")
export GLEMSEL_TEST_PG_REPLICA_URL="postgresql://postgres@127.0.0.1:$pg_replica_port/postgres"
export GLEMSEL_TEST_PG_REPLICA_CTL="$work/pg-replica"
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
my_key_owner=()
if [ "$(id -u)" = 0 ]; then
    as_mysql=(--user=mysql)
    my_key_owner=(-o mysql)
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
# The server without TLS is a copy of the fresh data directory, started
# small and without logs; both start at once.
cp -a "$work/my/data" "$work/my/plain"
# A replica of the main server, from the same fresh data directory: it
# replays the main server's binary log from its first event, the glemsel
# user included.
cp -a "$work/my/data" "$work/my/replica"
install -m 0600 "${my_key_owner[@]}" "$tls/server.key" "$work/my/server.key"
my_plain_port=$(free_port)
# Also on 127.0.0.2, which the certificate does not name.
my_options=("${as_mysql[@]}" --datadir="$work/my/data" --socket="$work/my/sock" --port="$my_port"
    --bind-address=127.0.0.1,127.0.0.2 --skip-name-resolve --pid-file="$work/my/pid" --log-error="$work/my/error.log"
    "${my_settings[@]}" --max-connections=300
    --ssl-cert="$tls/server.pem" --ssl-key="$work/my/server.key" --ssl-ca="$tls/ca.pem")
"$my_server" "${my_options[@]}" >/dev/null 2>&1 &
stoppers+=("\"$my_admin\" --socket=\"$work/my/sock\" -uroot shutdown >/dev/null 2>&1")
"$my_server" "${as_mysql[@]}" --datadir="$work/my/plain" --socket="$work/my/plain.sock" --port="$my_plain_port" \
    --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$work/my/plain.pid" --log-error="$work/my/plain.log" \
    --skip-ssl --innodb-buffer-pool-size=16M --innodb-flush-log-at-trx-commit=2 --max-connections=20 \
    >/dev/null 2>&1 &
stoppers+=("\"$my_admin\" --socket=\"$work/my/plain.sock\" -uroot shutdown >/dev/null 2>&1")
my_replica_port=$(free_port)
my_replica_options=("${as_mysql[@]}" --datadir="$work/my/replica" --socket="$work/my/replica.sock" --port="$my_replica_port"
    --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$work/my/replica.pid" --log-error="$work/my/replica.log"
    --server-id=2 --read-only=ON --slave-skip-errors=all --skip-ssl --innodb-buffer-pool-size=32M
    --innodb-flush-log-at-trx-commit=2 --max-connections=20)
"$my_server" "${my_replica_options[@]}" >/dev/null 2>&1 &
stoppers+=("\"$my_admin\" --socket=\"$work/my/replica.sock\" -uroot shutdown >/dev/null 2>&1")
for sock in sock plain.sock; do
    for _ in $(seq 1 120); do
        "$my_admin" --socket="$work/my/$sock" -uroot ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    "$my_admin" --socket="$work/my/$sock" -uroot ping >/dev/null 2>&1 \
        || { cat "$work/my/error.log" "$work/my/plain.log" >&2; exit 1; }
    "$my_client" --socket="$work/my/$sock" -uroot -e \
        "CREATE USER 'glemsel'@'127.0.0.1' IDENTIFIED BY 'glemsel'; GRANT ALL ON *.* TO 'glemsel'@'127.0.0.1' WITH GRANT OPTION;"
done
export GLEMSEL_TEST_MYSQL_URL="mysql://glemsel:glemsel@127.0.0.1:$my_port/"
for _ in $(seq 1 120); do
    "$my_admin" --socket="$work/my/replica.sock" -uroot ping >/dev/null 2>&1 && break
    sleep 0.5
done
"$my_client" --socket="$work/my/replica.sock" -uroot -e \
    "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$my_port, MASTER_USER='glemsel', MASTER_PASSWORD='glemsel', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;" \
    || { cat "$work/my/replica.log" >&2; exit 1; }
# For tests/replica_lag.rs: the replica, and GLEMSEL_TEST_MYSQL_REPLICA_CTL
# stop|start (a clean shutdown; replication resumes when it starts).
{
    printf '#!/usr/bin/env bash\nset -e\ncase "$1" in\n'
    printf 'stop) %q --socket=%q -uroot shutdown ;;\n' "$my_admin" "$work/my/replica.sock"
    printf 'start) setsid '; printf '%q ' "$my_server" "${my_replica_options[@]}"; printf '>/dev/null 2>&1 </dev/null &\n'
    printf '    for _ in $(seq 1 240); do %q --socket=%q -uroot ping >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1 ;;\n' \
        "$my_admin" "$work/my/replica.sock"
    printf '*) echo "usage: $0 stop|start" >&2; exit 2 ;;\nesac\n'
} >"$work/my-replica"
chmod +x "$work/my-replica"
export GLEMSEL_TEST_MYSQL_REPLICA_URL="mysql://glemsel:glemsel@127.0.0.1:$my_replica_port/"
export GLEMSEL_TEST_MYSQL_REPLICA_CTL="$work/my-replica"
export GLEMSEL_TEST_MYSQL_PLAIN_URL="mysql://glemsel:glemsel@127.0.0.1:$my_plain_port/"
# Kills the server (SIGKILL, as a crash) and starts it again, for the fault
# tests.
{
    printf '#!/usr/bin/env bash\nset -e\n'
    printf 'kill -9 "$(cat %q)"\n' "$work/my/pid"
    printf 'while %q --socket=%q -uroot ping >/dev/null 2>&1; do sleep 0.1; done\n' "$my_admin" "$work/my/sock"
    printf 'sleep 0.5\n'
    printf 'setsid '; printf '%q ' "$my_server" "${my_options[@]}"
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
