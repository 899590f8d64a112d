#!/usr/bin/env bash
# First start of the analytics database (docker-entrypoint-initdb.d): the logins of
# sql/roles/analytics_roles.sql with their passwords from the environment. The database
# owner (POSTGRES_USER) stays the only role with DDL; the `migrate` service uses it.
set -euo pipefail
: "${ANALYTICS_PIPELINE_PASSWORD:?ANALYTICS_PIPELINE_PASSWORD not set}"
: "${ANALYTICS_API_PASSWORD:?ANALYTICS_API_PASSWORD not set}"
: "${ANALYTICS_BI_PASSWORD:?ANALYTICS_BI_PASSWORD not set}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -f /triage/roles/analytics_roles.sql
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v pipeline="$ANALYTICS_PIPELINE_PASSWORD" -v api="$ANALYTICS_API_PASSWORD" \
  -v bi="$ANALYTICS_BI_PASSWORD" <<'SQL'
ALTER ROLE triage_pipeline PASSWORD :'pipeline';
ALTER ROLE triage_api PASSWORD :'api';
ALTER ROLE triage_bi PASSWORD :'bi';
SQL
