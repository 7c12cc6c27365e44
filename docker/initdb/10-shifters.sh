#!/bin/bash
# Runs once, as the postgres superuser, when the postgres service initialises an empty volume
# (the official image runs /docker-entrypoint-initdb.d/*.sh in order).
#
# Creates the database run_production, the group roles that sql/009_roles.sql enforces
# (run_production_owner, which no login acts as, and run_production_reader, _shifter and
# _coordinator), and one LOGIN role per person from
#   SHIFTERS="alice:pw-a bob:pw-b"       (run_production_shifter: run sessions, pause, resume)
#   COORDINATORS="carol:pw-c"            (run_production_coordinator: also new, close, limits, retry,
#                                         release --force, validate --fix, datasets import)
#   READERS="web:pw-w"                   (run_production_reader: status, reports, the web page)
# The migrations are applied by the postgres superuser (the cli service's default DATABASE_URL), so
# the tables belong to run_production_owner and no shifter's login owns anything.
# Names and passwords reach SQL as psql variables (:"name" quotes an identifier, :'pw' a literal).
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE ROLE run_production_owner NOLOGIN;
CREATE ROLE run_production_reader NOLOGIN;
CREATE ROLE run_production_shifter NOLOGIN IN ROLE run_production_reader;
CREATE ROLE run_production_coordinator NOLOGIN IN ROLE run_production_shifter;
CREATE DATABASE run_production OWNER run_production_owner;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname run_production <<'SQL'
ALTER SCHEMA public OWNER TO run_production_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL

create_logins() {
  local role=$1 list=$2 entry name password
  for entry in $list; do
    name=${entry%%:*}
    password=${entry#*:}
    if [ -z "$name" ] || [ "$name" = "$entry" ] || [ -z "$password" ]; then
      echo "10-shifters.sh: entry '$entry' is not name:password" >&2
      exit 1
    fi
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -v name="$name" -v pw="$password" -v role="$role" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'pw' IN ROLE :"role";
SQL
    echo "10-shifters.sh: created login $name in $role"
  done
}
create_logins run_production_shifter "${SHIFTERS:-}"
create_logins run_production_coordinator "${COORDINATORS:-}"
create_logins run_production_reader "${READERS:-}"

# A person added later (as the postgres user, e.g. docker compose exec postgres psql -U postgres):
#   CREATE ROLE dave LOGIN PASSWORD '...' IN ROLE run_production_shifter;
# made coordinator: GRANT run_production_coordinator TO dave;
# and one who leaves: DROP ROLE alice;  (events keep their login name)
