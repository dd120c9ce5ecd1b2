// Package integration holds rwsplit's tests against real PostgreSQL
// streaming replication and real MariaDB GTID replication, started by
// internal/testcluster from the local server binaries. It is a module of
// its own so that its test-only dependencies (drivers, GORM, fault
// injection) stay out of the library's go.mod.
package integration
