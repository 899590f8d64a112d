#!/usr/bin/env bash
# First start of the helpdesk database (docker-entrypoint-initdb.d, after the schema):
# the CDC login of sql/roles/source_roles.sql, its password from the environment, and
# replication connections for it (the image's pg_hba.conf admits normal connections only).
set -euo pipefail
: "${HELPDESK_CDC_PASSWORD:?HELPDESK_CDC_PASSWORD not set}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -f /triage/roles/source_roles.sql
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$HELPDESK_CDC_PASSWORD" <<'SQL'
ALTER ROLE triage_cdc PASSWORD :'password';
SQL
echo "host replication triage_cdc all scram-sha-256" >> "$PGDATA/pg_hba.conf"
