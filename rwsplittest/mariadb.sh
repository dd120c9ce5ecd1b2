#!/bin/sh
# The kit's start script for a MariaDB node in a container. It replaces the
# image's entrypoint and runs the server's own tools found in the image
# (mariadb-install-db, mariadbd), as the mysql user.
#
#   start.sh            start the node: on its first start a node makes a new
#                       data directory; the primary creates the accounts
#                       (replicated, so the replicas create none), a replica
#                       is pointed at the primary named by RWS_PRIMARY with
#                       GTID replication; an old primary that the kit
#                       restarts with /rwsplittest/follow in place comes back
#                       read-only, following the primary named there; then
#                       the server runs
#   start.sh ready      exits 0 once the application user can query over TCP
#   start.sh promote    lets this replica apply what it received, stops
#                       replicating and takes writes
#   start.sh follow H   repoints this replica to the primary at host H
#   start.sh streaming H  exits 0 if this replica replicates from host H
#
# Environment: RWS_ROLE (primary or replica), RWS_NODE (its number),
# RWS_PRIMARY, RWS_DELAY_MS, RWS_SETTINGS (configuration lines),
# RWS_APP_USER / RWS_APP_PASSWORD (the application user, who owns the
# database of the same name), RWS_SUPER_PASSWORD, RWS_REPL_PASSWORD.
set -eu

data=/var/lib/mysql/rwsplittest
sock=/run/mysqld/rwsplittest.sock
cnf=/rwsplittest/my.cnf
PATH="/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin:$PATH"
client=$(command -v mariadb || command -v mysql)
server=$(command -v mariadbd || command -v mysqld)
installdb=$(command -v mariadb-install-db || command -v mysql_install_db)

# as_mysql runs a command as the mysql user; it execs it, so that a
# command run in the background has the PID $! names.
if command -v setpriv >/dev/null 2>&1; then
	as_mysql="setpriv --reuid=mysql --regid=mysql --init-groups"
else
	as_mysql="gosu mysql"
fi

root_sql() {
	"$client" --socket=$sock -uroot -p"$RWS_SUPER_PASSWORD" -N -B -e "$1"
}

# temp_server starts the server on its socket only, without replication
# threads, for setting it up; stop_temp stops it.
temp_server() {
	$as_mysql "$server" --defaults-file=$cnf --skip-networking --skip-slave-start &
	temp=$!
	i=0
	until "$client" --socket=$sock -uroot ${1:+-p"$1"} -e 'SELECT 1' >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 240 ] || { echo "rwsplittest: the server did not start" >&2; exit 1; }
		sleep 0.25
	done
}
stop_temp() {
	kill "$temp"
	wait "$temp" || true
}

case "${1:-start}" in
ready)
	"$client" -h127.0.0.1 -P3306 -u"$RWS_APP_USER" -p"$RWS_APP_PASSWORD" "$RWS_APP_USER" -N -B -e 'SELECT 1' >/dev/null 2>&1
	exit $?
	;;
promote)
	root_sql "STOP SLAVE IO_THREAD"
	io=$("$client" --socket=$sock -uroot -p"$RWS_SUPER_PASSWORD" -e 'SHOW SLAVE STATUS\G' | sed -n 's/^ *Gtid_IO_Pos: *//p')
	if [ -n "$io" ]; then
		[ "$(root_sql "SELECT MASTER_GTID_WAIT('$io', 120)")" = 0 ] || { echo "rwsplittest: the replica did not apply $io" >&2; exit 1; }
	fi
	root_sql "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0"
	exit 0
	;;
streaming)
	st=$("$client" --socket=$sock -uroot -p"$RWS_SUPER_PASSWORD" -e 'SHOW SLAVE STATUS\G')
	echo "$st" | grep -q "Master_Host: $2\$" && echo "$st" | grep -q 'Slave_IO_Running: Yes' && echo "$st" | grep -q 'Slave_SQL_Running: Yes'
	exit $?
	;;
follow)
	root_sql "STOP SLAVE; CHANGE MASTER TO MASTER_HOST = '$2', MASTER_USE_GTID = slave_pos; START SLAVE"
	exit 0
	;;
esac

mkdir -p "$data" /run/mysqld /rwsplittest
chown mysql:mysql "$data" /run/mysqld
delay=$(((${RWS_DELAY_MS:-0} + 999) / 1000))
follow_host=
if [ -f /rwsplittest/follow ]; then
	follow_host=$(cat /rwsplittest/follow)
	RWS_ROLE=replica
fi
{
	echo "[mariadbd]"
	echo "datadir = $data"
	echo "socket = $sock"
	echo "port = 3306"
	echo "bind-address = 0.0.0.0"
	echo "skip-name-resolve"
	echo "server_id = $((${RWS_NODE:-0} + 1))"
	echo "log_bin = mariadb-bin"
	echo "log_slave_updates = ON"
	echo "binlog_format = ROW"
	[ "$RWS_ROLE" = primary ] || echo "read_only = ON"
	printf '%s\n' "${RWS_SETTINGS:-}"
} >$cnf

if [ ! -d "$data/mysql" ]; then
	$as_mysql "$installdb" --defaults-file=$cnf --skip-test-db --auth-root-authentication-method=normal >/dev/null
	temp_server ""
	if [ "$RWS_ROLE" = primary ]; then
		"$client" --socket=$sock -uroot <<-EOF
			SET SESSION sql_log_bin = 0;
			ALTER USER 'root'@'localhost' IDENTIFIED BY '$RWS_SUPER_PASSWORD';
			SET SESSION sql_log_bin = 1;
			CREATE USER 'replicator'@'%' IDENTIFIED BY '$RWS_REPL_PASSWORD';
			GRANT REPLICATION SLAVE ON *.* TO 'replicator'@'%';
			CREATE USER '$RWS_APP_USER'@'%' IDENTIFIED BY '$RWS_APP_PASSWORD';
			CREATE DATABASE \`$RWS_APP_USER\`;
			GRANT ALL ON \`$RWS_APP_USER\`.* TO '$RWS_APP_USER'@'%';
			GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO '$RWS_APP_USER'@'%';
		EOF
	else
		# The accounts come from the primary; this node creates none.
		"$client" --socket=$sock -uroot <<-EOF
			SET SESSION sql_log_bin = 0;
			ALTER USER 'root'@'localhost' IDENTIFIED BY '$RWS_SUPER_PASSWORD';
			CHANGE MASTER TO MASTER_HOST = '$RWS_PRIMARY', MASTER_PORT = 3306, MASTER_USER = 'replicator',
				MASTER_PASSWORD = '$RWS_REPL_PASSWORD', MASTER_USE_GTID = slave_pos, MASTER_DELAY = $delay,
				MASTER_CONNECT_RETRY = 1;
		EOF
	fi
	stop_temp
elif [ -n "$follow_host" ]; then
	# An old primary comes back as a replica of the new one, after its own
	# last transaction.
	temp_server "$RWS_SUPER_PASSWORD"
	root_sql "CHANGE MASTER TO MASTER_HOST = '$follow_host', MASTER_PORT = 3306, MASTER_USER = 'replicator',
		MASTER_PASSWORD = '$RWS_REPL_PASSWORD', MASTER_USE_GTID = current_pos, MASTER_DELAY = $delay, MASTER_CONNECT_RETRY = 1"
	stop_temp
	rm -f /rwsplittest/follow
fi

exec $as_mysql "$server" --defaults-file=$cnf
