// The local backend (local_*.go) starts real, throw-away database
// replication clusters from the server binaries installed on the machine;
// its full API (LocalCluster, LocalNode) is what rwsplit's own
// integration tests drive.
//
// Two kinds of cluster are supported:
//
//   - PostgreSQL physical streaming replication: a primary created with
//     initdb and hot standbys cloned from it with pg_basebackup -R -X stream.
//   - MariaDB GTID replication: a primary and replicas that all run with
//     log_bin and log_slave_updates (so any node can be promoted), the
//     replicas started with read_only=1 and pointed at the primary with
//     CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos.
//
// Every node gets its own temporary directory (os.MkdirTemp, prefix
// "rwsplit-pg-" or "rwsplit-maria-", mode 0700) that holds the data
// directory, the Unix socket and the server log. Servers listen on
// 127.0.0.1 only, on a free port picked at start-up (start-up is retried
// with another port when the bind fails). LocalCluster.Close stops every server
// and removes all of those directories; Start cleans up after itself when it
// fails half-way. Each node directory records the process that created it;
// the first Start of a later test process removes directories whose creator
// is gone (a test binary killed before it could call Close), together with
// the shared memory a killed PostgreSQL server leaves behind.
//
// The package uses only the standard library: SQL is run through the
// command-line clients (psql, mariadb) and servers are plain child processes
// started with os/exec (no pg_ctl, no mysqld_safe). On Linux each server is
// started in its own process group with a parent-death signal (SIGKILL), so
// servers die with the test binary even if Close is never called.
//
// # Root and server users
//
// PostgreSQL refuses to run as root. When the current effective uid is 0,
// every server process and every tool that writes into a data directory
// (initdb, pg_basebackup, postgres, mariadb-install-db, mariadbd) is run as
// the "postgres" or "mysql" system user respectively, and the node
// directories are chowned to that user. When not running as root everything
// runs as the current user. The client programs (psql, mariadb) always run as
// the current user and connect over TCP with a password (or, during
// bootstrap, over the node's Unix socket).
//
// # Binaries
//
// PostgreSQL binaries are looked up in PATH first and then in the highest
// /usr/lib/postgresql/<version>/bin; MariaDB binaries in PATH and then
// /usr/sbin and /usr/bin (mariadbd or mysqld, mariadb-install-db or
// mysql_install_db, mariadb or mysql). When they are missing, Start returns
// an error telling to run "make deps".
//
// # Accounts
//
// Every node has the same accounts:
//
//   - the application user "app" (password "app-secret-pw") owning / having
//     all privileges on the database "app" and nothing else (so a write sent
//     to a replica fails: PostgreSQL "cannot execute ... in a read-only
//     transaction", MariaDB error 1290);
//   - a superuser (PostgreSQL "postgres", MariaDB "root") used by LocalNode.Exec
//     and LocalNode.AdminDSN;
//   - a monitoring user "monitor" (PostgreSQL: member of pg_monitor and
//     pg_read_all_data; MariaDB: SLAVE MONITOR, BINLOG MONITOR, REPLICATION
//     CLIENT and SELECT on app.*);
//   - the replication user "repl".
//
// On PostgreSQL, tables, sequences and schemas that the superuser creates in
// the app database (for example through LocalNode.Exec) are automatically granted
// to app through default privileges, so fixtures created with Exec are usable
// through LocalNode.DSN.
//
// # Timing
//
// A primary with two replicas starts in about 2-3 seconds on an idle
// two-core machine, for either kind (MariaDB runs mariadb-install-db once
// and copies the result to the replicas). Helpers that wait (start-up, WaitCaughtUp, Follow, Promote)
// honour the context; when the context has no deadline a default of one
// minute applies.

package rwsplittest
