// Package integration holds rwsplit's tests against real PostgreSQL
// streaming replication and real MariaDB GTID replication, started by the
// test kit (rwsplittest) from the local server binaries, through the
// local backend's full API (LocalCluster, LocalNode). It is a module of
// its own so that its test-only dependencies (drivers, GORM, fault
// injection) stay out of the library's go.mod.
package integration
