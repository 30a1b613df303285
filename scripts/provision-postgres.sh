#!/usr/bin/env bash
# Installs PostgreSQL from Debian's packages when missing, starts a cluster, and creates the test
# role and database. Prints the asyncpg URL for AGENTCTL_TEST_DATABASE_URL as its last line.
# Idempotent: safe to run on a machine where all of this is already done.
set -euo pipefail

DB_USER=${AGENTCTL_TEST_DB_USER:-agentctl}
DB_PASS=${AGENTCTL_TEST_DB_PASSWORD:-agentctl}
DB_NAME=${AGENTCTL_TEST_DB_NAME:-agentctl_test}
PORT=${AGENTCTL_TEST_DB_PORT:-5432}

log() { echo "provision-postgres: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing PostgreSQL from Debian's packages"
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >&2
fi

VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -q "^${VERSION} main$"; then
  log "creating cluster ${VERSION}/main"
  as_root pg_createcluster "$VERSION" main --port "$PORT" >&2
fi
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $4}' | grep -q online; then
  log "starting cluster ${VERSION}/main"
  as_root pg_ctlcluster "$VERSION" main start >&2
fi
PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $3}')

for _ in $(seq 1 30); do
  if as_root su postgres -c "psql -p $PORT -tAc 'select 1'" >/dev/null 2>&1; then break; fi
  sleep 1
done

psql_admin() { as_root su postgres -c "psql -v ON_ERROR_STOP=1 -p $PORT -tAc \"$1\""; }
if [ "$(psql_admin "select 1 from pg_roles where rolname='${DB_USER}'")" != "1" ]; then
  log "creating role ${DB_USER}"
  psql_admin "create role ${DB_USER} login createdb password '${DB_PASS}'" >/dev/null
fi
# Tests drop their per-test databases WITH (FORCE); that may need to end a backend of another
# role (autovacuum working on the fresh database).
psql_admin "grant pg_signal_backend to ${DB_USER}" >/dev/null
if [ "$(psql_admin "select 1 from pg_database where datname='${DB_NAME}'")" != "1" ]; then
  log "creating database ${DB_NAME}"
  psql_admin "create database ${DB_NAME} owner ${DB_USER}" >/dev/null
fi
echo "postgresql+asyncpg://${DB_USER}:${DB_PASS}@127.0.0.1:${PORT}/${DB_NAME}"
