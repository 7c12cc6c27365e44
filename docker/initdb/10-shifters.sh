#!/bin/bash
# Runs once, as the postgres superuser, when the postgres service initialises an empty volume
# (the official image runs /docker-entrypoint-initdb.d/*.sh in order).
#
# Creates the group role run_production owning the database run_production, and one LOGIN role
# per shifter from SHIFTERS="alice:pw-a bob:pw-b". Each shifter role is a member of the group and
# runs as it (ALTER ROLE ... SET role), so every table a migration creates belongs to the group and
# all shifters may migrate, claim and write; pg_stat_activity still shows who is connected.
# Names and passwords reach SQL as psql variables (:"name" quotes an identifier, :'pw' a literal).
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE ROLE run_production NOLOGIN;
CREATE DATABASE run_production OWNER run_production;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname run_production <<'SQL'
ALTER SCHEMA public OWNER TO run_production;
-- gen_random_uuid() is built in since PostgreSQL 13; nothing to install.
SQL

for entry in ${SHIFTERS:-}; do
  name=${entry%%:*}
  password=${entry#*:}
  if [ -z "$name" ] || [ "$name" = "$entry" ] || [ -z "$password" ]; then
    echo "10-shifters.sh: SHIFTERS entry '$entry' is not name:password" >&2
    exit 1
  fi
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -v name="$name" -v pw="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'pw' IN ROLE run_production;
ALTER ROLE :"name" SET role = 'run_production';
SQL
  echo "10-shifters.sh: created role $name"
done

# A shifter added later (as the postgres user, e.g. docker compose exec postgres psql -U postgres):
#   CREATE ROLE carol LOGIN PASSWORD '...' IN ROLE run_production;
#   ALTER ROLE carol SET role = 'run_production';
# and a shifter who leaves: DROP ROLE alice;  (their events keep their name)
