#!/bin/sh
# The read replica's entry point: on first start clone the primary (pg_basebackup through
# the slot citylab_replica, -R writes standby.signal and primary_conninfo), then run as a
# hot standby taking read-only queries. PGPASSWORD and CITYLAB_PRIMARY_HOST come from the
# compose file. Promotion is manual (docs/scaling.md).
set -e
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
if command -v su-exec >/dev/null; then AS_POSTGRES="su-exec postgres"; else AS_POSTGRES="gosu postgres"; fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    until pg_isready -h "$CITYLAB_PRIMARY_HOST" -U citylab -d citylab; do sleep 1; done
    mkdir -p "$PGDATA"
    chown postgres "$PGDATA"
    chmod 700 "$PGDATA"
    $AS_POSTGRES pg_basebackup -h "$CITYLAB_PRIMARY_HOST" -U citylab -D "$PGDATA" -X stream \
        -S citylab_replica -R --checkpoint=fast
fi
exec $AS_POSTGRES postgres -D "$PGDATA" -c hot_standby=on -c hot_standby_feedback=on
