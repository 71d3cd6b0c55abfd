#!/bin/sh
# The primary's side of the read replica, run once when its volume is initialised
# (docker-entrypoint-initdb.d): replication logins of the citylab role with a password,
# and the physical replication slot the replica streams through (it keeps the WAL the
# replica has not received yet, so a replica that was down catches up).
set -e
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -c "SELECT pg_create_physical_replication_slot('citylab_replica', true)"
