#!/bin/sh
# Entrypoint of the stand-in postgres image (scripts/images.sh): starts
# one server as the official image does. As root it takes the data
# directory for the postgres user and runs again as that user; with an
# empty data directory it makes one (POSTGRES_PASSWORD is required;
# POSTGRES_USER and POSTGRES_DB are optional) that accepts password logins
# from any address; then it runs the command.
set -e
if [ "${1#-}" != "$1" ]; then
	set -- postgres "$@"
fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown -R postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups /usr/local/bin/docker-entrypoint.sh "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	user=${POSTGRES_USER:-postgres}
	pwfile=$(mktemp)
	printf '%s\n' "${POSTGRES_PASSWORD:?the stand-in postgres image needs POSTGRES_PASSWORD}" >"$pwfile"
	initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
	rm -f "$pwfile"
	echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
	echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	db=${POSTGRES_DB:-$user}
	if [ "$db" != postgres ]; then
		pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
		psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
		pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	fi
	echo "stand-in entrypoint: database system initialised"
fi
exec "$@"
