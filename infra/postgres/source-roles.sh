#!/usr/bin/env bash
# First start of the helpdesk database (docker-entrypoint-initdb.d, after the schema):
# the CDC and outcome logins of sql/roles/source_roles.sql, their passwords from the environment, and
# replication connections for it (the image's pg_hba.conf admits normal connections only).
set -euo pipefail
: "${HELPDESK_CDC_PASSWORD:?HELPDESK_CDC_PASSWORD not set}"
: "${HELPDESK_OUTCOMES_PASSWORD:?HELPDESK_OUTCOMES_PASSWORD not set}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -f /triage/roles/source_roles.sql
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$HELPDESK_CDC_PASSWORD" -v outcomes_password="$HELPDESK_OUTCOMES_PASSWORD" <<'SQL'
ALTER ROLE triage_cdc PASSWORD :'password';
ALTER ROLE triage_outcomes PASSWORD :'outcomes_password';
SQL
echo "host replication triage_cdc all scram-sha-256" >> "$PGDATA/pg_hba.conf"
