#!/bin/sh
# Entrypoint of the stand-in mariadb image (scripts/images.sh): starts one
# server as the official image does. As root it takes the data directory
# for the mysql user and runs again as that user; with an empty data
# directory it makes one, with MARIADB_ROOT_PASSWORD for root from any
# address and, when set, MARIADB_DATABASE and MARIADB_USER /
# MARIADB_PASSWORD owning it; then it runs the command.
set -e
if [ "${1#-}" != "$1" ]; then
	set -- mariadbd "$@"
fi
if [ "$1" = mariadbd ] && [ "$(id -u)" = 0 ]; then
	mkdir -p /var/lib/mysql /run/mysqld
	chown -R mysql:mysql /var/lib/mysql /run/mysqld
	exec setpriv --reuid=mysql --regid=mysql --init-groups /usr/local/bin/docker-entrypoint.sh "$@"
fi
if [ "$1" = mariadbd ] && [ ! -d /var/lib/mysql/mysql ]; then
	mariadb-install-db --datadir=/var/lib/mysql --skip-test-db --auth-root-authentication-method=normal >/dev/null
	sock=/run/mysqld/init.sock
	mariadbd --datadir=/var/lib/mysql --skip-networking --socket=$sock &
	pid=$!
	i=0
	until mariadb --socket=$sock -uroot -e 'SELECT 1' >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 120 ] || { echo "stand-in entrypoint: server did not start" >&2; exit 1; }
		sleep 0.5
	done
	{
		if [ -n "$MARIADB_ROOT_PASSWORD" ]; then
			echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';"
			echo "CREATE USER 'root'@'%' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';"
			echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
		fi
		if [ -n "$MARIADB_DATABASE" ]; then
			echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"
		fi
		if [ -n "$MARIADB_USER" ]; then
			echo "CREATE USER '$MARIADB_USER'@'%' IDENTIFIED BY '$MARIADB_PASSWORD';"
			[ -z "$MARIADB_DATABASE" ] || echo "GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$MARIADB_USER'@'%';"
		fi
	} | mariadb --socket=$sock -uroot
	kill "$pid"
	wait "$pid" || true
	echo "stand-in entrypoint: database initialised"
fi
exec "$@"
