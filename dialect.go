package rwsplit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/rwsplit/rwsplit/internal/sqlclass"
)

// dialect is what rwsplit knows of a database family: the lexer of its
// read/write classifier, and (for the position-aware features) the
// queries it asks each node.
type dialect struct {
	name  string
	class sqlclass.Dialect
}

var (
	dialectPostgres = &dialect{name: "postgres", class: sqlclass.Postgres}
	dialectMySQL    = &dialect{name: "mysql", class: sqlclass.MySQL}
	dialectMariaDB  = &dialect{name: "mariadb", class: sqlclass.MySQL}
	dialectGeneric  = &dialect{name: "generic", class: sqlclass.Generic}
)

// dialectByName resolves a WithDialect name.
func dialectByName(name string) (*dialect, bool) {
	switch strings.ToLower(name) {
	case "postgres", "postgresql", "pgx":
		return dialectPostgres, true
	case "mysql":
		return dialectMySQL, true
	case "mariadb":
		return dialectMariaDB, true
	case "generic":
		return dialectGeneric, true
	}
	return nil, false
}

// driverDialect tells the dialect from the Go package that implements the
// driver, so that it needs no connection.
func driverDialect(d driver.Driver) *dialect {
	t := reflect.TypeOf(d)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return dialectGeneric
	}
	pkg := t.PkgPath()
	switch {
	case strings.HasPrefix(pkg, "github.com/jackc/pgx/"),
		pkg == "github.com/lib/pq",
		strings.HasPrefix(pkg, "github.com/jackc/pgx"):
		return dialectPostgres
	case pkg == "github.com/go-sql-driver/mysql":
		return dialectMySQL
	}
	return dialectGeneric
}

// probeResult is what one health probe learned of a node.
type probeResult struct {
	err     error
	primary bool // the node says it takes writes

	// pos is the node's position in the primary's history: on a PostgreSQL
	// primary its current WAL LSN, on a standby its replay LSN; for MySQL
	// and MariaDB the node's GTID set. posKnown is false where the dialect
	// has no positions.
	pos      position
	posKnown bool

	// replayAge is how long ago the replica replayed its last transaction
	// (PostgreSQL), and secondsBehind the server's own lag estimate
	// (MySQL/MariaDB Seconds_Behind_*; -1 when NULL: replication broken).
	replayAge     time.Duration
	replayAgeOK   bool
	secondsBehind int64
	lagReported   bool // secondsBehind is set
}

// position is a replication position: a PostgreSQL LSN, or a MySQL /
// MariaDB GTID set kept as text.
type position struct {
	lsn  uint64
	gtid string
}

// probe asks one node, under ctx, whether it is alive, which role it has
// and where it is. go-sql-driver/mysql serves MySQL and MariaDB, whose
// positions differ; unless WithDialect named one, the first probe that
// answers tells which from VERSION().
func (db *DB) probe(ctx context.Context, h *sql.DB) probeResult {
	d := db.positions.Load()
	switch d {
	case dialectPostgres:
		return probePostgres(ctx, h)
	case dialectMySQL, dialectMariaDB:
		if !db.flavorKnown.Load() {
			var version string
			if err := h.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
				return probeResult{err: err}
			}
			d = dialectMySQL
			if strings.Contains(strings.ToLower(version), "mariadb") {
				d = dialectMariaDB
			}
			db.positions.Store(d)
			db.flavorKnown.Store(true)
		}
		return probeMySQL(ctx, h, d == dialectMariaDB)
	}
	return probeResult{err: h.PingContext(ctx)}
}

// pgProbe asks everything in one round trip. pg_current_wal_lsn() fails
// during recovery and the standby functions return NULL on a primary, so
// the query branches on pg_is_in_recovery().
const pgProbe = `SELECT pg_is_in_recovery(),
	(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text,
	COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8, -1)`

func probePostgres(ctx context.Context, db *sql.DB) probeResult {
	var (
		inRecovery bool
		lsn        sql.NullString
		age        float64
	)
	if err := db.QueryRowContext(ctx, pgProbe).Scan(&inRecovery, &lsn, &age); err != nil {
		return probeResult{err: err}
	}
	res := probeResult{primary: !inRecovery}
	if lsn.Valid {
		if v, ok := parseLSN(lsn.String); ok {
			res.pos, res.posKnown = position{lsn: v}, true
		}
	}
	if inRecovery && age >= 0 {
		res.replayAge, res.replayAgeOK = time.Duration(age*float64(time.Second)), true
	}
	return res
}

// parseLSN parses PostgreSQL's "XXXXXXXX/XXXXXXXX" text form of an LSN.
func parseLSN(s string) (uint64, bool) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, false
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return h<<32 | l, true
}

// probeMySQL reads the role and GTID position, then the replication
// status. A node is a primary only if read_only is off and it replicates
// from nobody: read_only is not replicated and defaults to off, so it alone
// proves nothing. SHOW REPLICA STATUS needs a monitoring privilege (MariaDB
// SLAVE MONITOR, MySQL REPLICATION CLIENT); without it the role rests on
// read_only and lag on GTID comparison.
func probeMySQL(ctx context.Context, db *sql.DB, mariadb bool) probeResult {
	q := "SELECT @@read_only, @@gtid_executed"
	if mariadb {
		q = "SELECT @@read_only, CASE WHEN @@read_only THEN @@gtid_slave_pos ELSE @@gtid_binlog_pos END"
	}
	var (
		readOnly bool
		gtid     sql.NullString
	)
	if err := db.QueryRowContext(ctx, q).Scan(&readOnly, &gtid); err != nil {
		if isNodeFault(ctx, err) || ctx.Err() != nil {
			return probeResult{err: err}
		}
		// A server without these variables: the role from read_only alone.
		gtid = sql.NullString{}
		if err := db.QueryRowContext(ctx, "SELECT @@read_only").Scan(&readOnly); err != nil {
			return probeResult{err: err}
		}
	}
	res := probeResult{primary: !readOnly}
	if gtid.Valid {
		res.pos, res.posKnown = position{gtid: gtid.String}, true
	}
	replicating, behind, ok, err := replicaStatus(ctx, db)
	switch {
	case err != nil && isNodeFault(ctx, err):
		return probeResult{err: err}
	case err != nil: // no privilege: rely on read_only
	case ok:
		res.primary = res.primary && !replicating
		res.secondsBehind, res.lagReported = behind, replicating
	}
	return res
}

// replicaStatus runs SHOW REPLICA STATUS (SHOW SLAVE STATUS on servers that
// predate it) and returns whether replication is configured and its
// Seconds_Behind_Source / Seconds_Behind_Master (-1 when NULL).
func replicaStatus(ctx context.Context, db *sql.DB) (replicating bool, behind int64, ok bool, err error) {
	rows, err := db.QueryContext(ctx, "SHOW REPLICA STATUS")
	if err != nil && mysqlNumber(err) == mysqlParseError {
		rows, err = db.QueryContext(ctx, "SHOW SLAVE STATUS")
	}
	if err != nil {
		return false, 0, false, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return false, 0, false, err
	}
	idx := -1
	for i, c := range cols {
		if c == "Seconds_Behind_Master" || c == "Seconds_Behind_Source" {
			idx = i
		}
	}
	if !rows.Next() {
		return false, 0, true, rows.Err()
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return false, 0, false, err
	}
	behind = -1
	if idx >= 0 && vals[idx] != nil {
		if v, err := strconv.ParseInt(string(vals[idx]), 10, 64); err == nil {
			behind = v
		}
	}
	return true, behind, true, nil
}

// covers reports whether position p has everything position q has, and
// whether the two are comparable at all.
func (d *dialect) covers(p, q position) (bool, bool) {
	switch d {
	case dialectPostgres:
		return p.lsn >= q.lsn, true
	case dialectMariaDB:
		return mariaGTIDCovers(p.gtid, q.gtid)
	case dialectMySQL:
		return mysqlGTIDCovers(p.gtid, q.gtid)
	}
	return false, false
}
