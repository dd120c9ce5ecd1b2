package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

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

// probe asks one node, under ctx, whether it is alive, which role it has
// and where it is. go-sql-driver/mysql serves MySQL and MariaDB, whose
// positions differ; unless WithDialect named one, the first probe that
// answers tells which from VERSION().
func (db *DB) probe(ctx context.Context, h *sql.DB) probeResult {
	d, err := db.flavor(ctx, h)
	if err != nil {
		return probeResult{err: db.connectFailure(ctx, h, err)}
	}
	if d.probe == nil {
		return probeResult{err: db.connectFailure(ctx, h, h.PingContext(ctx))}
	}
	res := d.probe(ctx, d, h)
	res.err = db.connectFailure(ctx, h, res.err)
	return res
}

// errNoConnection marks a probe that could not get a connection to its
// node at all (refused credentials, an unknown database, a DSN the driver
// rejects): a failed probe, whatever the error's kind, where a statement
// that fails on a live connection (a missing privilege) is not.
type errNoConnection struct{ err error }

func (e *errNoConnection) Error() string { return e.err.Error() }
func (e *errNoConnection) Unwrap() error { return e.err }

// connectFailure returns err, marked as errNoConnection when h cannot
// give a connection now. It asks only after an error that is not plainly
// the node's fault, so a good probe costs nothing more.
func (db *DB) connectFailure(ctx context.Context, h *sql.DB, err error) error {
	if err == nil || ctx.Err() != nil || isNodeFault(db.health.ctx, err) {
		return err
	}
	c, cerr := h.Conn(ctx)
	if cerr != nil {
		return &errNoConnection{cerr}
	}
	c.Close()
	return err
}

// flavor returns the dialect of positions; for a driver of several
// databases (go-sql-driver/mysql) it asks the server's VERSION() once,
// through h, which it is.
func (db *DB) flavor(ctx context.Context, h *sql.DB) (*dialect, error) {
	if db.positions.known.Load() {
		return db.positions.Load(), nil
	}
	var version string
	if err := h.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return nil, err
	}
	d := db.positions.Load().flavorOf(version)
	db.positions.d.Store(d)
	db.positions.known.Store(true)
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

func probePostgres(ctx context.Context, _ *dialect, db *sql.DB) probeResult {
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

// probeMySQL reads the role and GTID position, then the replication
// status. A node is a primary only if read_only is off and it replicates
// from nobody: read_only is not replicated and defaults to off, so it alone
// proves nothing. SHOW REPLICA STATUS needs a monitoring privilege (MariaDB
// SLAVE MONITOR, MySQL REPLICATION CLIENT); without it the role rests on
// read_only and lag on GTID comparison.
func probeMySQL(ctx context.Context, d *dialect, db *sql.DB) probeResult {
	var (
		readOnly bool
		gtid     sql.NullString
		server   sql.NullString
	)
	if err := db.QueryRowContext(ctx, d.roleQuery).Scan(&readOnly, &gtid, &server); err != nil {
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
		res.epoch, res.epochKnown = d.parseEpoch(server.String)
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

// refreshPosition reads a replica's applied position now and caches it,
// keeping the epoch the last probe read.
func (db *DB) refreshPosition(ctx context.Context, r *Replica) {
	db.learnPosition(ctx, r, db.positions.Load())
}

// learnPosition reads what replica r has applied, through the handle its
// probes use, and records it as the node's position, as a probe would,
// unless a probe recorded a later one meanwhile. A write concern's reads
// go through it too: a replica it saw replay a schema change takes reads
// at once, without waiting for the health loop's next round.
func (db *DB) learnPosition(ctx context.Context, r *Replica, d *dialect) (position, bool) {
	start := monotime()
	pos, ok := db.replicaPosition(ctx, r, d)
	if !ok {
		return pos, false
	}
	np := &nodePosition{pos: pos, at: start}
	if old := r.pos.Load(); old != nil {
		if old.at > start {
			return pos, true
		}
		np.epoch, np.epochKnown = old.epoch, old.epochKnown
	}
	r.pos.Store(np)
	db.notifyPositions()
	return pos, true
}

// replicaPosition reads what replica r has applied, through the handle
// its probes use.
func (db *DB) replicaPosition(ctx context.Context, r *Replica, d *dialect) (position, bool) {
	var text sql.NullString
	if err := r.monitor.QueryRowContext(ctx, d.replicaPositionQuery).Scan(&text); err != nil || !text.Valid {
		return position{}, false
	}
	db.counts.positionReads.Add(1)
	return newPosition(d, text.String)
}

// primaryPosition reads the primary's current position and epoch.
func (db *DB) primaryPosition(ctx context.Context, p *Replica) (position, epoch, bool, error) {
	d, err := db.flavor(ctx, p.db)
	if err != nil {
		return position{}, epoch{}, false, err
	}
	var text, ep sql.NullString
	if err := p.db.QueryRowContext(ctx, d.primaryPositionQuery).Scan(&text, &ep); err != nil {
		return position{}, epoch{}, false, err
	}
	db.counts.positionReads.Add(1)
	if !text.Valid {
		return position{}, epoch{}, false, errors.New("rwsplit: the primary reported no position")
	}
	pos, ok := newPosition(d, text.String)
	if !ok {
		return position{}, epoch{}, false, fmt.Errorf("rwsplit: unreadable position %q", text.String)
	}
	var e epoch
	var eok bool
	if ep.Valid {
		e, eok = d.parseEpoch(ep.String)
	}
	return pos, e, eok, nil
}
