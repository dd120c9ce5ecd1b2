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
	at        int64 // monotime the probe was sent
	err       error
	primary   bool // the node says it takes writes
	roleKnown bool // primary comes from the node itself, not a guess

	// pos is the node's position in the primary's history: on a PostgreSQL
	// primary its current WAL LSN, on a standby its replay LSN; for MySQL
	// and MariaDB the node's GTID set. posKnown is false where the dialect
	// has no positions.
	pos      position
	posKnown bool

	// epoch is the history the node is on: the PostgreSQL timeline (on a
	// standby, the one it receives, when the user may read
	// pg_stat_wal_receiver); on a MySQL/MariaDB primary its server_id
	// (MariaDB) or server_uuid (MySQL). epochKnown is false when unread.
	epoch      epoch
	epochKnown bool

	// replayAge is how long ago the replica replayed its last transaction
	// (PostgreSQL), and secondsBehind the server's own lag estimate
	// (MySQL/MariaDB Seconds_Behind_*; -1 when NULL: replication broken).
	replayAge     time.Duration
	replayAgeOK   bool
	secondsBehind int64
	lagReported   bool // secondsBehind is set
}

// position is a replication position: a PostgreSQL LSN, or a MySQL /
// MariaDB GTID set kept as text and parsed once (maria, mysql), so that
// comparing positions on the read path allocates nothing.
type position struct {
	lsn   uint64
	gtid  string
	maria []mariaGTID               // MariaDB: one per domain, sorted by domain
	mysql map[string][]gtidInterval // MySQL: per source, merged intervals
}

// epoch names a primary's history: a PostgreSQL timeline, a MariaDB
// server_id, a MySQL server_uuid.
type epoch struct {
	n  uint64
	id string
}

// newPosition returns the position of text in dialect d.
func newPosition(d *dialect, text string) (position, bool) {
	switch d {
	case dialectPostgres:
		v, ok := parseLSN(text)
		return position{lsn: v}, ok
	case dialectMariaDB:
		g, ok := parseMariaGTIDList(text)
		return position{gtid: text, maria: g}, ok
	case dialectMySQL:
		set, ok := parseMySQLGTIDSet(text)
		return position{gtid: text, mysql: set}, ok
	}
	return position{}, false
}

// String is the position's text form, as the server writes it.
func (p position) String() string {
	if p.gtid != "" || p.maria != nil || p.mysql != nil {
		return p.gtid
	}
	return formatLSN(p.lsn)
}

func formatLSN(v uint64) string {
	return strconv.FormatUint(v>>32, 16) + "/" + strconv.FormatUint(v&0xffffffff, 16)
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
		d, err := db.flavor(ctx, h)
		if err != nil {
			return probeResult{err: err}
		}
		return probeMySQL(ctx, h, d == dialectMariaDB)
	}
	return probeResult{err: h.PingContext(ctx)}
}

// flavor returns the dialect of positions; for a "mysql" driver it asks
// the server's VERSION() once, through h, whether it is MariaDB.
func (db *DB) flavor(ctx context.Context, h *sql.DB) (*dialect, error) {
	if db.flavorKnown.Load() {
		return db.positions.Load(), nil
	}
	var version string
	if err := h.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return nil, err
	}
	d := dialectMySQL
	if strings.Contains(strings.ToLower(version), "mariadb") {
		d = dialectMariaDB
	}
	db.positions.Store(d)
	db.flavorKnown.Store(true)
	return d, nil
}

// pgProbe asks everything in one round trip. pg_current_wal_lsn() fails
// during recovery and the standby functions return NULL on a primary, so
// the query branches on pg_is_in_recovery().
//
// The timeline: on a primary from the name of its current WAL file (the
// control file's checkpoint timeline lags right after a promotion); on a
// standby the one its WAL receiver receives, which PostgreSQL shows only
// to roles with pg_read_all_stats (pg_monitor), else NULL.
const pgProbe = `SELECT pg_is_in_recovery(),
	(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text,
	COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8, -1),
	CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli::int8 FROM pg_stat_wal_receiver)
		ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 END`

func probePostgres(ctx context.Context, db *sql.DB) probeResult {
	var (
		inRecovery bool
		lsn        sql.NullString
		age        float64
		tli        sql.NullInt64
	)
	if err := db.QueryRowContext(ctx, pgProbe).Scan(&inRecovery, &lsn, &age, &tli); err != nil {
		return probeResult{err: err}
	}
	res := probeResult{primary: !inRecovery, roleKnown: true}
	if lsn.Valid {
		if v, ok := parseLSN(lsn.String); ok {
			res.pos, res.posKnown = position{lsn: v}, true
		}
	}
	if tli.Valid && tli.Int64 > 0 {
		res.epoch, res.epochKnown = epoch{n: uint64(tli.Int64)}, true
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
	q := "SELECT @@read_only, @@gtid_executed, @@server_uuid"
	if mariadb {
		q = "SELECT @@read_only, CASE WHEN @@read_only THEN @@gtid_slave_pos ELSE @@gtid_binlog_pos END, @@server_id"
	}
	var (
		readOnly bool
		gtid     sql.NullString
		server   sql.NullString
	)
	if err := db.QueryRowContext(ctx, q).Scan(&readOnly, &gtid, &server); err != nil {
		if isNodeFault(ctx, err) || ctx.Err() != nil {
			return probeResult{err: err}
		}
		// A server without these variables: the role from read_only alone.
		gtid = sql.NullString{}
		if err := db.QueryRowContext(ctx, "SELECT @@read_only").Scan(&readOnly); err != nil {
			return probeResult{err: err}
		}
	}
	res := probeResult{primary: !readOnly, roleKnown: true}
	d := dialectMySQL
	if mariadb {
		d = dialectMariaDB
	}
	if gtid.Valid {
		res.pos, res.posKnown = newPosition(d, gtid.String)
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
	if server.Valid && res.primary {
		// A replica's own server id names no history: its position's
		// GTIDs carry the servers that wrote them.
		res.epoch, res.epochKnown = serverEpoch(d, server.String)
	}
	return res
}

// replicaStatus returns whether replication is configured and its
// Seconds_Behind_Source / Seconds_Behind_Master (-1 when NULL).
func replicaStatus(ctx context.Context, db *sql.DB) (replicating bool, behind int64, ok bool, err error) {
	st, err := showReplicaStatus(ctx, db)
	if err != nil {
		return false, 0, false, err
	}
	if st == nil {
		return false, 0, true, nil
	}
	v, found := st["Seconds_Behind_Source"]
	if !found {
		v, found = st["Seconds_Behind_Master"]
	}
	behind = -1
	if n, err := strconv.ParseInt(v, 10, 64); found && err == nil {
		behind = n
	}
	return true, behind, true, nil
}

// showReplicaStatus runs SHOW REPLICA STATUS (SHOW SLAVE STATUS on servers
// that predate it) and returns its first row by column name, NULL as "";
// nil when the node replicates from nobody.
func showReplicaStatus(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW REPLICA STATUS")
	if err != nil && mysqlNumber(err) == mysqlParseError {
		rows, err = db.QueryContext(ctx, "SHOW SLAVE STATUS")
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	st := make(map[string]string, len(cols))
	for i, c := range cols {
		st[c] = string(vals[i])
	}
	return st, rows.Close()
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

// serverEpoch is the epoch of a MySQL/MariaDB primary from its server_uuid
// or server_id.
func serverEpoch(d *dialect, server string) (epoch, bool) {
	if d == dialectMariaDB {
		n, err := strconv.ParseUint(server, 10, 32)
		return epoch{n: n}, err == nil
	}
	return epoch{id: strings.ToLower(server)}, server != ""
}

// primaryPositionQuery asks a primary for its position after a commit and
// its epoch. PostgreSQL: the insert LSN, which is at or past the end of
// every committed transaction's WAL.
func (d *dialect) primaryPositionQuery() string {
	switch d {
	case dialectPostgres:
		return `SELECT pg_current_wal_insert_lsn()::text,
	('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int8::text`
	case dialectMariaDB:
		return "SELECT @@gtid_binlog_pos, @@server_id"
	case dialectMySQL:
		return "SELECT @@gtid_executed, @@server_uuid"
	}
	return ""
}

// replicaPositionQuery asks a replica for what it has applied.
func (d *dialect) replicaPositionQuery() string {
	switch d {
	case dialectPostgres:
		return "SELECT pg_last_wal_replay_lsn()::text"
	case dialectMariaDB:
		return "SELECT @@gtid_slave_pos"
	case dialectMySQL:
		return "SELECT @@gtid_executed"
	}
	return ""
}

// hasPositions reports whether the dialect knows replication positions.
func (d *dialect) hasPositions() bool {
	return d == dialectPostgres || d == dialectMariaDB || d == dialectMySQL
}

func (e epoch) String() string {
	if e.id != "" {
		return e.id
	}
	return strconv.FormatUint(e.n, 10)
}
