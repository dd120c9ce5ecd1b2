// Package fakedriver is an in-memory database/sql driver for unit tests and
// benchmarks of the read/write-splitting library.
//
// Each [Server] is a named fake database node. [Server.DB] returns a
// *sql.DB whose connections talk to that node in memory; every query returns
// exactly one row with one column, "node", holding the server's name, so
//
//	var node string
//	err := db.QueryRowContext(ctx, "SELECT 1").Scan(&node)
//
// tells which node served the statement. Exec always reports RowsAffected 1
// and LastInsertId 0.
//
// A Server counts what it receives (see [Kind] and [Server.Count]) and can
// optionally keep a log of every statement ([Server.SetRecord],
// [Server.Log]). Knobs simulate failures: latency, a crashed server
// ([Server.SetDown]), ping/query/exec errors, a read-only hot standby
// ([Server.SetReadOnly]) and blocking ([Server.Block]).
//
// # Errors seen through database/sql when a server is down
//
// While a server is down, Connect fails with a *net.OpError wrapping
// syscall.ECONNREFUSED and every operation on an existing connection returns
// driver.ErrBadConn. database/sql retries ErrBadConn on pooled operations and
// its last attempt always dials a new connection, so a caller of
// DB.Query/Exec/Ping/Begin sees the connect error:
// errors.Is(err, syscall.ECONNREFUSED) is true and errors.As finds a
// *net.OpError. Only operations pinned to one connection (inside a *sql.Tx,
// on a *sql.Conn, Tx.Commit/Rollback) return driver.ErrBadConn itself.
//
// A crash also kills connections: connections opened before SetDown(true)
// stay broken (driver.ErrBadConn, IsValid false) after SetDown(false), like
// connections to a restarted server; database/sql discards them and dials
// new ones.
//
// # Counting rules
//
// Counts and log entries record operations the server received. Operations
// rejected because the server is down (or on a connection killed by an
// earlier crash) are not recorded under their own kind but under [Refused].
// An operation is recorded before it waits for [Server.Block] or latency and
// before the error knobs are applied, so a statement that then fails with a
// knob error or a cancelled context is still counted.
//
// The package starts no goroutines. Allocation on the hot path is kept to
// zero: rows and transaction objects are embedded in the connection, the
// node value is boxed once per server, and Exec returns a zero-size result.
package fakedriver
