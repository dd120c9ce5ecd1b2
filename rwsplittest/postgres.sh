#!/bin/sh
# The kit's start script for a PostgreSQL node in a container. It replaces
# the image's entrypoint and runs the server's own tools found in the image
# (initdb, pg_basebackup, pg_ctl), as the postgres user.
#
#   start.sh            start the node: the primary makes a new data directory
#                       on its first start; a replica takes a base backup of
#                       the primary named by RWS_PRIMARY (or by the file
#                       /rwsplittest/follow, written by the kit before it
#                       restarts an old primary); then the server runs
#   start.sh ready      exits 0 once the server answers a query over TCP
#   start.sh promote    promotes this standby and waits until it takes writes
#   start.sh follow H   repoints this standby to the primary at host H
#   start.sh timeline   prints this primary's timeline
#   start.sh streaming H [T]  exits 0 if this standby streams from host H
#                       (on timeline T)
#
# Environment: RWS_ROLE (primary or replica), RWS_PRIMARY, RWS_DELAY_MS,
# RWS_SETTINGS (configuration lines), RWS_APP_USER / RWS_APP_PASSWORD (the
# application user, who owns the database of the same name),
# RWS_SUPER_PASSWORD, RWS_REPL_PASSWORD.
set -eu

bin=$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
data=/var/lib/postgresql/data/rwsplittest
export PATH="$bin:$PATH"

as_pg() {
	if command -v setpriv >/dev/null 2>&1; then
		setpriv --reuid=postgres --regid=postgres --init-groups "$@"
	else
		gosu postgres "$@"
	fi
}

sql() {
	PGPASSWORD=$RWS_SUPER_PASSWORD psql -X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres -c "$1"
}

case "${1:-start}" in
ready)
	PGPASSWORD=$RWS_APP_PASSWORD PGCONNECT_TIMEOUT=2 psql -X -q -t -A -h 127.0.0.1 -U "$RWS_APP_USER" -d "$RWS_APP_USER" -c 'SELECT 1' >/dev/null
	exit $?
	;;
promote)
	sql "SELECT pg_promote(true, 60)" >/dev/null
	[ "$(sql 'SELECT pg_is_in_recovery()')" = f ]
	exit $?
	;;
timeline)
	sql "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
	exit $?
	;;
streaming)
	[ "$(sql "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming' AND sender_host = '$2' AND received_tli = ${3:-received_tli}")" = 1 ]
	exit $?
	;;
follow)
	conninfo="host=$2 port=5432 user=replicator password=$RWS_REPL_PASSWORD application_name=$(cat /etc/hostname)"
	sql "ALTER SYSTEM SET primary_conninfo = '$conninfo'" >/dev/null
	sql "SELECT pg_reload_conf()" >/dev/null
	exit 0
	;;
esac

mkdir -p "$data" /var/run/postgresql
chown postgres:postgres "$data" /var/run/postgresql
chmod 700 "$data"

if [ -f /rwsplittest/follow ]; then
	# An old primary comes back as a replica of the new one.
	RWS_ROLE=replica
	RWS_PRIMARY=$(cat /rwsplittest/follow)
	rm -rf "${data:?}"/* /rwsplittest/follow
fi

if [ ! -s "$data/PG_VERSION" ]; then
	if [ "$RWS_ROLE" = primary ]; then
		pw=$(mktemp)
		printf '%s\n' "$RWS_SUPER_PASSWORD" >"$pw"
		chown postgres "$pw"
		as_pg initdb -D "$data" -U postgres --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
		rm -f "$pw"
		{
			echo "listen_addresses = '*'"
			echo "wal_level = replica"
			echo "max_wal_senders = 16"
			echo "wal_keep_size = '256MB'"
			echo "hot_standby = on"
			echo "hot_standby_feedback = on"
			printf '%s\n' "${RWS_SETTINGS:-}"
		} >>"$data/postgresql.conf"
		# Replication from the other containers of the cluster's network.
		echo "host replication replicator all scram-sha-256" >>"$data/pg_hba.conf"
		echo "host all all all scram-sha-256" >>"$data/pg_hba.conf"
		as_pg pg_ctl -D "$data" -o "-c listen_addresses=''" -w start >/dev/null
		as_pg psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres <<-EOF
			CREATE ROLE replicator REPLICATION LOGIN PASSWORD '$RWS_REPL_PASSWORD';
			CREATE ROLE "$RWS_APP_USER" LOGIN PASSWORD '$RWS_APP_PASSWORD';
			CREATE DATABASE "$RWS_APP_USER" OWNER "$RWS_APP_USER";
		EOF
		as_pg pg_ctl -D "$data" -m fast -w stop >/dev/null
	else
		until PGPASSWORD=$RWS_REPL_PASSWORD PGCONNECT_TIMEOUT=2 as_pg pg_basebackup -h "$RWS_PRIMARY" -U replicator \
			-D "$data" -X stream -R -c fast -d "application_name=$(cat /etc/hostname)" 2>/tmp/basebackup.log; do
			rm -rf "${data:?}"/*
			sleep 0.5
		done
		if [ "${RWS_DELAY_MS:-0}" -gt 0 ]; then
			echo "recovery_min_apply_delay = '${RWS_DELAY_MS}ms'" >>"$data/postgresql.auto.conf"
		fi
	fi
fi

if command -v setpriv >/dev/null 2>&1; then
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$data"
fi
exec gosu postgres "$bin/postgres" -D "$data"
