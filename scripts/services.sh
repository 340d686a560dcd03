#!/usr/bin/env bash
# Makes sure the local PostgreSQL and Redis that Leadflow needs are installed and running
# (and a C compiler, which the build needs).
#
# Sourced by scripts/run and scripts/test, or run on its own. Works on a fresh
# Debian/Ubuntu machine as root (or as a user with sudo). When LEADFLOW_DATABASE_URL or
# LEADFLOW_REDIS_URL point at another host (or a non-default port), that service is
# left alone: it is someone else's to run.
#
# Redis holds the job queues, so a locally started Redis gets queue-safe settings:
# `noeviction` (never silently drop a job), AOF with `everysec` fsync (survive restarts
# losing at most ~1 s) and `hz 100` (timely expiry of job locks).
set -euo pipefail

lf_log() { printf '[leadflow] %s\n' "$*" >&2; }
lf_warn() { printf '[leadflow] warning: %s\n' "$*" >&2; }
lf_die() {
  printf '[leadflow] error: %s\n' "$*" >&2
  exit 1
}

# Runs a command as root: directly when we are root, through sudo otherwise.
lf_root() {
  if [[ ${EUID:-$(id -u)} -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    lf_die "need root (or sudo) to run: $*"
  fi
}

# Runs a command as the postgres OS user (peer auth over the local socket).
lf_as_postgres() {
  if [[ ${EUID:-$(id -u)} -eq 0 ]]; then
    if command -v runuser >/dev/null 2>&1; then
      (cd / && runuser -u postgres -- "$@")
    else
      local cmd
      cmd=$(printf '%q ' "$@")
      (cd / && su postgres -s /bin/sh -c "$cmd")
    fi
  elif command -v sudo >/dev/null 2>&1; then
    (cd / && sudo -u postgres -- "$@")
  else
    return 1
  fi
}

# Prints the host part of a URL (scheme://[user[:pass]@]host[:port][/path][?query]).
lf_url_host() {
  local rest=${1#*://}
  rest=${rest%%[/?]*}
  rest=${rest##*@}
  if [[ $rest == \[* ]]; then
    rest=${rest#\[}
    printf '%s\n' "${rest%%]*}"
  else
    printf '%s\n' "${rest%%:*}"
  fi
}

# Prints the port part of a URL, or nothing when it has none.
lf_url_port() {
  local rest=${1#*://}
  rest=${rest%%[/?]*}
  rest=${rest##*@}
  if [[ $rest == \[* ]]; then
    rest=${rest#*]}
  fi
  if [[ $rest == *:* ]]; then
    printf '%s\n' "${rest##*:}"
  fi
}

# Prints the user name of a URL, or nothing when it has none.
lf_url_user() {
  local rest=${1#*://}
  rest=${rest%%[/?]*}
  if [[ $rest == *@* ]]; then
    rest=${rest%@*}
    printf '%s\n' "${rest%%:*}"
  fi
}

# True when the URL points at this machine's default port for the service.
lf_url_is_local() {
  local url=$1 default_port=$2 host port
  host=$(lf_url_host "$url")
  port=$(lf_url_port "$url")
  case $host in
    '' | localhost | 127.0.0.1 | ::1) ;;
    *) return 1 ;;
  esac
  [[ -z $port || $port == "$default_port" ]]
}

lf_install_packages() {
  local packages=("$@")
  command -v apt-get >/dev/null 2>&1 ||
    lf_die "apt-get not found: install ${packages[*]} yourself, or set LEADFLOW_DATABASE_URL / LEADFLOW_REDIS_URL"
  lf_log "installing ${packages[*]} (apt-get)"
  lf_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  lf_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
}

lf_pg_ready() {
  pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1
}

lf_pg_start() {
  local version=''
  if [[ -d /etc/postgresql ]]; then
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1)
  fi
  if [[ -z $version && -d /usr/lib/postgresql ]]; then
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1)
  fi
  if [[ -n $version && ! -d /etc/postgresql/$version/main ]] && command -v pg_createcluster >/dev/null 2>&1; then
    lf_log "creating PostgreSQL $version cluster 'main'"
    lf_root pg_createcluster "$version" main >/dev/null || lf_warn "pg_createcluster $version main failed"
  fi
  lf_log "starting PostgreSQL ${version:-(service)}"
  if [[ -z $version ]] || ! lf_root pg_ctlcluster --skip-systemctl-redirect "$version" main start; then
    lf_root service postgresql start || true
  fi
  local i
  for ((i = 0; i < 30; i++)); do
    if lf_pg_ready; then
      return 0
    fi
    sleep 1
  done
  lf_die "PostgreSQL did not accept connections on 127.0.0.1:5432 within 30 s (see /var/log/postgresql/)"
}

# The password file the scripts keep for a role they gave a password (see lf_pg_ensure_role);
# Leadflow itself looks for it in its data directory too.
lf_pgpass_file() {
  local dir=${LEADFLOW_DATA_DIR:-.leadflow}
  [[ $dir == /* ]] || dir=$PWD/$dir
  printf '%s\n' "$dir/pgpass"
}

# Escapes a field of a PostgreSQL password file (`:` and `\`).
lf_pgpass_field() {
  local v=${1//\\/\\\\}
  printf '%s\n' "${v//:/\\:}"
}

# Makes sure the role the app connects as exists and can log in; never touches pg_hba.conf.
#
# Debian's PostgreSQL asks for a password on TCP (`scram-sha-256`), and a role created
# here has none. So when the role cannot log in and has no password at all (nothing can
# depend on one), it gets a generated password, kept in .leadflow/pgpass (mode 0600) and
# found through PGPASSFILE, which psql and sqlx both read: scripts/run and scripts/test
# export it, so the URL stays password-free and nothing has to be configured by hand.
lf_pg_ensure_role() {
  local url=$1 base scheme authority check_url user pgpass
  base=${url%%\?*}
  scheme=${base%%://*}
  authority=${base#*://}
  authority=${authority%%/*}
  check_url="$scheme://$authority/postgres"
  user=$(lf_url_user "$url")
  user=${user:-${PGUSER:-$(id -un)}}
  pgpass=$(lf_pgpass_file)

  if [[ -z ${PGPASSFILE:-} && -f $pgpass ]]; then
    export PGPASSFILE=$pgpass
  fi
  if psql "$check_url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    return 0
  fi
  local literal=${user//\'/\'\'} ident=${user//\"/\"\"}
  if [[ $(lf_as_postgres psql -Atqc "SELECT 1 FROM pg_roles WHERE rolname = '$literal'" 2>/dev/null || true) != 1 ]]; then
    lf_log "creating PostgreSQL role $user"
    lf_as_postgres psql -v ON_ERROR_STOP=1 -qc "CREATE ROLE \"$ident\" SUPERUSER LOGIN" >/dev/null 2>&1 ||
      lf_warn "could not create PostgreSQL role $user"
  fi
  if ! psql "$check_url" -Atqc 'SELECT 1' >/dev/null 2>&1 &&
    [[ $(lf_as_postgres psql -Atqc "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = '$literal'" 2>/dev/null || true) == t ]] &&
    [[ -z ${PGPASSFILE:-} || $PGPASSFILE == "$pgpass" ]]; then
    lf_log "PostgreSQL asks for a password on TCP: giving role $user a generated one (kept in $pgpass)"
    local password field host
    password=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    mkdir -p "$(dirname "$pgpass")"
    (
      umask 077
      field=$(lf_pgpass_field "$user")
      : >"$pgpass"
      # Any port: tests and PgBouncer reach the same server through local proxies.
      for host in 127.0.0.1 localhost; do
        printf '%s:*:*:%s:%s\n' "$host" "$field" "$password" >>"$pgpass"
      done
    )
    # The password goes to psql on stdin, so it never shows in a process listing.
    if printf "ALTER ROLE \"%s\" PASSWORD '%s';\n" "$ident" "$password" |
      lf_as_postgres psql -v ON_ERROR_STOP=1 -q >/dev/null 2>&1; then
      export PGPASSFILE=$pgpass
    else
      rm -f "$pgpass"
      lf_warn "could not set a password for PostgreSQL role $user"
    fi
  fi
  if ! psql "$check_url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    lf_warn "cannot connect to PostgreSQL at 127.0.0.1:5432 as role '$user'."
    lf_warn "PostgreSQL's authentication settings (pg_hba.conf) are left unchanged on purpose;"
    lf_warn "point Leadflow at a role that can log in instead, e.g."
    lf_warn "  export LEADFLOW_DATABASE_URL=postgres://postgres@127.0.0.1:5432/leadflow"
    lf_warn "  export LEADFLOW_DATABASE_URL=postgres://USER:PASSWORD@127.0.0.1:5432/leadflow"
  fi
}

lf_ensure_postgres() {
  local url=${LEADFLOW_DATABASE_URL:-postgres://localhost/leadflow}
  if ! lf_url_is_local "$url" 5432; then
    lf_log "PostgreSQL: using $(lf_url_host "$url") from LEADFLOW_DATABASE_URL (not starting a local one)"
    return 0
  fi
  if lf_pg_ready; then
    lf_log "PostgreSQL is running on 127.0.0.1:5432"
  else
    lf_pg_start
    lf_log "PostgreSQL is ready on 127.0.0.1:5432"
  fi
  lf_pg_ensure_role "$url"
}

# Prints the major version of redis-server (0 when unknown).
lf_redis_major() {
  local v
  v=$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9]*\)\..*/\1/p')
  printf '%s\n' "${v:-0}"
}

lf_ensure_redis() {
  if [[ -n ${LEADFLOW_REDIS_CLUSTER_NODES:-} ]]; then
    lf_log "Redis: using the cluster from LEADFLOW_REDIS_CLUSTER_NODES (not starting a local one)"
    return 0
  fi
  local url=${LEADFLOW_REDIS_URL:-redis://127.0.0.1:6379}
  if [[ $url == rediss://* ]] || ! lf_url_is_local "$url" 6379; then
    lf_log "Redis: using $(lf_url_host "$url") from LEADFLOW_REDIS_URL (not starting a local one)"
    return 0
  fi
  local cli=(redis-cli -h 127.0.0.1 -p 6379)
  if [[ -n ${LEADFLOW_REDIS_URL:-} ]]; then
    # Carries a password or database number when the URL has one.
    cli=(redis-cli -u "$url")
  fi

  local pong
  pong=$("${cli[@]}" ping 2>/dev/null || true)
  if [[ $pong == *NOAUTH* || $pong == *WRONGPASS* ]]; then
    lf_die "Redis on 127.0.0.1:6379 needs a password: set LEADFLOW_REDIS_URL=redis://:PASSWORD@127.0.0.1:6379"
  fi
  if [[ $pong == PONG ]]; then
    lf_log "Redis is running on 127.0.0.1:6379; applying queue settings"
    local setting name value reply
    for setting in 'maxmemory-policy noeviction' 'appendonly yes' 'appendfsync everysec' 'hz 100'; do
      read -r name value <<<"$setting"
      reply=$("${cli[@]}" CONFIG SET "$name" "$value" 2>/dev/null || true)
      if [[ $reply != OK ]]; then
        lf_warn "CONFIG SET $name $value refused (${reply:-no reply}); make sure the server is configured so"
      fi
    done
    return 0
  fi

  local dir=/var/lib/redis
  if [[ ! -d $dir || ! -w $dir ]]; then
    dir=${HOME:-$PWD}/.leadflow/redis
    mkdir -p "$dir"
  fi
  local bind=(127.0.0.1 -::1)
  if (($(lf_redis_major) < 7)); then
    bind=(127.0.0.1) # the optional-address '-' prefix needs Redis 7
  fi
  lf_log "starting Redis on 127.0.0.1:6379 (data in $dir)"
  redis-server --daemonize yes --bind "${bind[@]}" --port 6379 \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --hz 100 \
    --dir "$dir" --logfile "$dir/redis.log" ||
    lf_die "redis-server failed to start (see $dir/redis.log)"
  local i
  for ((i = 0; i < 30; i++)); do
    if [[ $("${cli[@]}" ping 2>/dev/null || true) == PONG ]]; then
      lf_log "Redis is ready on 127.0.0.1:6379"
      return 0
    fi
    sleep 1
  done
  tail -n 20 "$dir/redis.log" >&2 || true
  lf_die "Redis did not answer on 127.0.0.1:6379 within 30 s (see $dir/redis.log)"
}

# What the test suite needs beyond the services: `promtool` (Debian's prometheus package)
# checks the metrics exposition, Chromium drives the console's page, PgBouncer ≥ 1.21
# pools the app's connections in one test, redis-server and redis-cli make the Redis
# Clusters of the cluster tests.
lf_ensure_test_tools() {
  local packages=()
  # promtool checks the metrics exposition and the alert rules.
  command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
  # The operator console's page is tested in a real (headless) browser.
  command -v chromium >/dev/null 2>&1 || packages+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
  # Tests that need a Redis (or a Redis Cluster) of their own start redis-server processes
  # and join a cluster with redis-cli, whichever Redis the suite itself uses.
  command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || packages+=(redis-tools)
  if ! lf_pgbouncer_ok pgbouncer && ! [[ -x $LF_TRIXIE_ROOT/usr/sbin/pgbouncer ]]; then
    command -v debootstrap >/dev/null 2>&1 || packages+=(debootstrap)
  fi
  if ((${#packages[@]} > 0)); then
    lf_install_packages "${packages[@]}"
  fi
  lf_ensure_pgbouncer
}

# Where Debian 13's PgBouncer goes when the machine's own is older than 1.21.
LF_TRIXIE_ROOT=.leadflow/tools/trixie

# Whether `$@ --version` is PgBouncer 1.21 or newer: the first with prepared statements in
# transaction pooling (`max_prepared_statements`), which sqlx's named statements need.
lf_pgbouncer_ok() {
  "$@" --version 2>/dev/null |
    awk 'NR == 1 { split($2, v, "."); ok = (v[1] > 1 || (v[1] == 1 && v[2] >= 21)) } END { exit !ok }'
}

# The suite runs Leadflow behind a real PgBouncer in transaction mode. Debian 12 ships
# 1.18, so then Debian 13's package is installed into a small debootstrapped root (about a
# minute and 300 MB, once) that the test runs it from; the system is left as it is.
lf_ensure_pgbouncer() {
  if lf_pgbouncer_ok pgbouncer || lf_pgbouncer_ok lf_root chroot "$LF_TRIXIE_ROOT" pgbouncer; then
    return
  fi
  local partial=$LF_TRIXIE_ROOT.partial
  lf_log "PgBouncer 1.21 or newer is not installed; installing Debian 13's into $LF_TRIXIE_ROOT (debootstrap)"
  mkdir -p "$(dirname "$LF_TRIXIE_ROOT")"
  lf_root rm -rf "$partial"
  lf_root debootstrap --variant=minbase --include=pgbouncer trixie "$partial" http://deb.debian.org/debian \
    >"$partial.log" 2>&1 || lf_die "debootstrap of Debian 13 for PgBouncer failed (see $partial.log)"
  lf_root rm -rf "$LF_TRIXIE_ROOT"
  lf_root mv "$partial" "$LF_TRIXIE_ROOT"
  lf_pgbouncer_ok lf_root chroot "$LF_TRIXIE_ROOT" pgbouncer || lf_die "PgBouncer in $LF_TRIXIE_ROOT does not run"
}

lf_ensure_services() {
  local need_pg=0 need_redis=0 packages=()
  if lf_url_is_local "${LEADFLOW_DATABASE_URL:-postgres://localhost/leadflow}" 5432; then
    need_pg=1
  fi
  if [[ ${LEADFLOW_REDIS_URL:-} != rediss://* ]] &&
    lf_url_is_local "${LEADFLOW_REDIS_URL:-redis://127.0.0.1:6379}" 6379; then
    need_redis=1
  fi
  if ((need_pg)) && ! { command -v pg_ctlcluster && command -v psql && command -v pg_isready; } >/dev/null 2>&1; then
    packages+=(postgresql)
  fi
  if ((need_redis)) && ! { command -v redis-server && command -v redis-cli; } >/dev/null 2>&1; then
    packages+=(redis-server)
  fi
  # Both scripts build Leadflow, and `ring` (TLS) compiles C: rustup alone brings no compiler.
  if ! command -v cc >/dev/null 2>&1; then
    packages+=(gcc libc6-dev)
  fi
  if ((${#packages[@]} > 0)); then
    lf_install_packages "${packages[@]}"
  fi
  lf_ensure_postgres
  lf_ensure_redis
}

lf_ensure_services
