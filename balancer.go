package rwsplit

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"time"

	"github.com/rwsplit/rwsplit/internal/sqlclass"
)

// snapshot is the immutable set of replicas eligible for reads and the
// picker built over it. It is replaced as a whole, never modified, and
// published through an atomic pointer, so the read path takes no lock.
type snapshot struct {
	replicas []*Replica
	picker   Picker
	// only is the replica every pick returns, when the policy is one of
	// the built-in ones that always pick the only eligible replica: the
	// pick then costs no call.
	only *Replica
}

func newSnapshot(p Policy, replicas []*Replica) *snapshot {
	s := &snapshot{replicas: replicas}
	if len(replicas) > 0 {
		s.picker = p.Build(replicas)
	}
	if _, ok := p.(picksOnly); ok && len(replicas) == 1 {
		s.only = replicas[0]
	}
	return s
}

// has reports whether r is in the snapshot.
func (s *snapshot) has(r *Replica) bool {
	for _, x := range s.replicas {
		if x == r {
			return true
		}
	}
	return false
}

// pick returns a replica for a read, or nil when none is eligible.
func (s *snapshot) pick(info PickInfo) *Replica {
	r := s.only
	if r == nil {
		if s.picker == nil {
			return nil
		}
		if r = s.picker.Pick(info); r == nil {
			return nil
		}
	}
	if r.Role() != RoleReplica {
		return nil
	}
	if rs := r.rampStart.Load(); rs != 0 {
		r = s.rampUp(r, rs, info)
	}
	return r
}

// rampUp applies slow start to r, which came back at time rs: it keeps
// the read with probability equal to the elapsed share of the slow-start
// window, and otherwise sends it to another eligible replica that is not
// ramping up (from a random start, so the others share it evenly).
func (s *snapshot) rampUp(r *Replica, rs int64, _ PickInfo) *Replica {
	window := int64(defaultSlowStart)
	if r.owner != nil {
		window = int64(r.owner.cfg.slowStart)
	}
	elapsed := monotime() - rs
	if window <= 0 || elapsed >= window {
		r.rampStart.CompareAndSwap(rs, 0)
		return r
	}
	if rand.Int64N(window) < elapsed {
		return r
	}
	n := len(s.replicas)
	off := rand.IntN(n)
	for i := range n {
		if other := s.replicas[(off+i)%n]; other != r && other.rampStart.Load() == 0 {
			return other
		}
	}
	return r
}

// route is where a call goes. It has at most four fields, so that the
// compiler passes it in registers: a fifth field sends every copy through
// memory, which costs a store-forwarding stall on each return.
type route struct {
	r        *Replica
	read     bool // the statement is a pure read
	fallback bool // a read on the primary for want of a replica: holds a fallback slot
	pin      pin  // why the node was chosen rather than left to the policy
}

// pin says why a read's node was chosen outside the policy's pick.
type pin uint8

const (
	pinNone        pin = iota
	pinBounded         // bounded staleness: only nodes close enough qualify
	pinSession         // a session's read: the session notes its node
	pinSchema          // a write that changes the schema: its end sets the floor of reads
	pinForced          // the primary, as the context asks (WithPrimary, Strong)
	pinSchemaFloor     // the primary, as no replica has replayed a schema change yet
)

// constrained says the node was chosen for a consistency that the
// policy's other picks may not meet: such a read is not hedged.
func (rt route) constrained() bool { return rt.pin != pinNone }

// routeRead returns the node for a statement on the read path, and the
// options of ctx.
func (db *DB) routeRead(ctx context.Context, query string) (route, *callOptions, error) {
	read := db.classes.isRead(db.dialect.class, query)
	o := optionsOf(ctx)
	if !read {
		p, err := db.writer(ctx)
		if err != nil {
			return route{}, o, err
		}
		if o != nil && o.session != nil {
			// A writing query commits after its rows are read, out of
			// sight: the session is pending until ctx is done.
			o.session.beginPending(db, ctx)
		}
		if sqlclass.IsSchemaChange(db.dialect.class, query) {
			db.schemaBegin()
			return route{r: p, pin: pinSchema}, o, nil
		}
		return route{r: p}, o, nil
	}
	if o == nil {
		// The only replica, if it is one and not ramping up after a
		// return, nor kept off by a schema change, without the calls
		// that the general case takes.
		if r := db.snap.Load().only; r != nil && r.Role() == RoleReplica && r.rampStart.Load() == 0 && !db.schemaOpen.Load() {
			return route{r: r, read: true}, nil, nil
		}
		rt, err := db.routeReplica(ctx, query, nil)
		return rt, nil, err
	}
	rt, err := db.routeWith(ctx, o, query, nil)
	return rt, o, err
}

// routeWith routes a pure read made with the options o, avoiding the nodes
// in tried.
func (db *DB) routeWith(ctx context.Context, o *callOptions, query string, tried *triedNodes) (route, error) {
	switch o.readLevel() {
	case levelStrong:
		p, err := db.readPrimary()
		return route{r: p, read: true, pin: pinForced}, err
	case levelSession:
		return db.routeSession(ctx, o.session, query, tried)
	case levelBounded:
		return db.routeBounded(ctx, o.consistency.maxLag, query, tried)
	}
	return db.routeReplica(ctx, query, tried)
}

// routeNext routes the next attempt of a read made with ctx.
func (db *DB) routeNext(ctx context.Context, query string, tried *triedNodes) (route, error) {
	if o := optionsOf(ctx); o != nil {
		return db.routeWith(ctx, o, query, tried)
	}
	return db.routeReplica(ctx, query, tried)
}

// routeBounded picks a replica whose measured lag is at most maxLag, or
// the primary.
func (db *DB) routeBounded(ctx context.Context, maxLag time.Duration, query string, tried *triedNodes) (route, error) {
	fresh := func(r *Replica) bool {
		lag := r.lag.Load()
		return !tried.has(r) && lag != lagUnknown && lag <= int64(maxLag) && db.schemaAllowsAny(r)
	}
	snap := db.snap.Load()
	if r := snap.pick(PickInfo{Ctx: ctx, Query: query}); r != nil && fresh(r) {
		return route{r: r, read: true, pin: pinBounded}, nil
	}
	for _, r := range snap.replicas {
		if fresh(r) {
			return route{r: r, read: true, pin: pinBounded}, nil
		}
	}
	p, err := db.readPrimary()
	return route{r: p, read: true, pin: pinBounded}, err
}

// readPrimary returns the primary for a read, or ErrNoPrimary when it is
// fenced: a node that takes writes on an old timeline serves nothing.
func (db *DB) readPrimary() (*Replica, error) {
	p := db.primary.Load()
	if p.fenced.Load() {
		return nil, ErrNoPrimary
	}
	return p, nil
}

// routeReplica picks a replica for a read, avoiding the nodes in tried,
// or falls back to the primary within the fallback limit.
func (db *DB) routeReplica(ctx context.Context, query string, tried *triedNodes) (route, error) {
	snap := db.snap.Load()
	schema := db.schemaOpen.Load()
	if r := snap.pick(PickInfo{Ctx: ctx, Query: query}); r != nil && !tried.has(r) && (!schema || db.schemaAllows(r)) {
		return route{r: r, read: true}, nil
	} else if r != nil || schema {
		// A retry (the picker chose a node already tried), or a schema
		// change the pick has not replayed: take the first eligible
		// replica that qualifies.
		for _, r := range snap.replicas {
			if !tried.has(r) && (!schema || db.schemaAllows(r)) {
				return route{r: r, read: true}, nil
			}
		}
	}
	p, err := db.readPrimary()
	if err != nil {
		return route{}, err
	}
	if schema {
		// No replica has replayed a schema change yet: the primary,
		// which is not a fallback for want of replicas, is not capped.
		return route{r: p, read: true, pin: pinSchemaFloor}, nil
	}
	if db.replicaCount == 0 || tried.has(p) {
		return route{r: p, read: true}, nil
	}
	if lim := db.cfg.fallbackLimit; lim >= 0 {
		if db.counts.fallbackInFlight.Add(1) > int64(lim) {
			db.counts.fallbackInFlight.Add(-1)
			return route{}, ErrNoReplica
		}
	}
	return route{r: p, read: true, fallback: true}, nil
}

// served records a query that rt's node answered: the session's node for
// a read, or the end of a write outage for a write. (The call's end
// counted it.)
func (db *DB) served(ctx context.Context, rt route) {
	if !rt.read {
		db.wrote()
	} else if rt.pin == pinSession {
		noteRead(ctx, rt)
	}
}

// noteRead tells the session of ctx, if rt was routed for one, which node
// served its read.
func noteRead(ctx context.Context, rt route) {
	if rt.pin == pinSession {
		if o := optionsOf(ctx); o != nil && o.session != nil {
			o.session.noteRead(rt.r)
		}
	}
}

// sent counts a call about to be sent on rt.
func (db *DB) sent(rt route) {
	if rt.fallback {
		db.counts.fallbacks.Add(1)
	}
}

// refused counts a read refused to its caller with ErrNoReplica.
func (db *DB) refused(err error) error {
	if err == ErrNoReplica {
		db.counts.fallbackRejected.Add(1)
	}
	return err
}

// done releases what a call on rt held.
func (db *DB) done(rt route) {
	if rt.fallback && db.cfg.fallbackLimit >= 0 {
		db.counts.fallbackInFlight.Add(-1)
	}
}

// maxReadAttempts bounds the nodes one read tries: the first, then two
// others (replicas, then the primary).
const maxReadAttempts = 3

// triedNodes is the set of nodes a read has tried; it lives on the stack.
type triedNodes struct {
	n     int
	nodes [maxReadAttempts]*Replica
}

func (t *triedNodes) has(r *Replica) bool {
	if t == nil {
		return false
	}
	for _, x := range t.nodes[:t.n] {
		if x == r {
			return true
		}
	}
	return false
}

func (t *triedNodes) add(r *Replica) {
	if t.n < len(t.nodes) && !t.has(r) {
		t.nodes[t.n] = r
		t.n++
	}
}

// retryRoute decides, after a call on rt failed with err, where to run it
// again, or returns false to hand err to the caller. A pure read that
// failed because of the node is safe to run elsewhere (it changed
// nothing); so is a read that a replica refused as a write (it failed
// before doing anything), which goes to the primary. A caller's
// cancellation is never retried, nor is anything that may have written.
func (db *DB) retryRoute(ctx context.Context, rt route, err error, query string, tried *triedNodes) (route, bool) {
	tried.add(rt.r)
	replica := rt.r.Role() == RoleReplica
	if rt.read && replica && isUnknownObject(err) && db.schemaNewerThan(rt.r) {
		// A table or column a schema change made, which the replica has
		// not replayed: the primary has it.
		p, perr := db.readPrimary()
		if perr != nil {
			return route{}, false
		}
		db.schema.reruns.Add(1)
		db.cfg.logger.Debug("rwsplit: replica has not replayed a schema change the read needs; re-running it on the primary", "node", rt.r.name)
		return route{r: p, read: true}, true
	}
	if rt.read && replica && isReadOnlyRejection(err) {
		p, perr := db.readPrimary()
		if perr != nil {
			return route{}, false
		}
		rt.r.readOnlyRetries.Add(1)
		db.cfg.logger.Debug("rwsplit: replica refused a read as a write; re-running it on the primary", "node", rt.r.name)
		if o := optionsOf(ctx); o != nil && o.session != nil {
			// On the primary it writes, and commits out of sight, as a
			// writing query does: the session's reads must see it.
			o.session.beginPending(db, ctx)
		}
		return route{r: p}, true
	}
	if !rt.read || tried.n >= maxReadAttempts || isCallerDone(ctx, err) {
		return route{}, false
	}
	if !isNodeFault(ctx, err) && !(replica && isRecoveryConflict(err)) {
		return route{}, false
	}
	next, rerr := db.routeNext(ctx, query, tried)
	if rerr != nil || tried.has(next.r) {
		db.done(next)
		return route{}, false
	}
	rt.r.retries.Add(1)
	db.cfg.logger.Debug("rwsplit: read failed; retrying on another node", "node", rt.r.name, "err", errorText(err))
	return next, true
}

// kind is what a call on route rt counts as when it succeeds.
func (rt route) kind() callKind {
	if rt.read {
		return callRead
	}
	return callWrite
}

// hedgeable reports whether a read routed by rt may be hedged (when
// hedging is on): a read on a replica, which can be hedged on another
// replica or, last, the primary.
func (rt route) hedgeable() bool {
	return rt.read && !rt.fallback && !rt.constrained() && rt.r.Role() == RoleReplica
}

// queryOn runs a query on node r: the statement prep prepared there when
// prep is set, the text query otherwise. With wantRow it returns the row
// and its error, else the rows.
func queryOn(ctx context.Context, r *Replica, query string, prep *sharedStmt, args []any, wantRow bool) (*sql.Rows, *sql.Row, error) {
	if prep != nil {
		st, err := prep.on(ctx, r)
		if err != nil {
			return nil, nil, err
		}
		if wantRow {
			row := st.QueryRowContext(ctx, args...)
			return nil, row, row.Err()
		}
		rows, err := st.QueryContext(ctx, args...)
		return rows, nil, err
	}
	if wantRow {
		row := r.db.QueryRowContext(ctx, query, args...)
		return nil, row, row.Err()
	}
	rows, err := r.db.QueryContext(ctx, query, args...)
	return rows, nil, err
}

// execOn runs the statement prep, prepared on node r.
func execOn(ctx context.Context, r *Replica, prep *sharedStmt, args []any) (sql.Result, error) {
	st, err := prep.on(ctx, r)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// read runs a statement on the read path (its text query, or the
// prepared statement prep when set), for QueryRowContext when wantRow
// is set and QueryContext otherwise: it routes it, hedges it when hedging
// is on, and runs it on another node after a failure that allows it (see
// retryRoute). It returns the rows, or the row, of the node that answered;
// when the read fails, the error and (for wantRow) the row that carries it,
// or no row when the read was refused before it was sent.
func (db *DB) read(ctx context.Context, query string, prep *sharedStmt, args []any, wantRow bool) (*sql.Rows, *sql.Row, error) {
	rt, o, err := db.routeRead(ctx, query)
	watch := db.watching(ctx, o)
	if err != nil {
		if watch {
			db.observeRefused(ctx, o, OpQuery, err)
		}
		return nil, nil, db.refused(err)
	}
	var tried triedNodes
	var start int64
	for attempt := 1; ; attempt++ {
		db.sent(rt)
		var rows *sql.Rows
		var row *sql.Row
		var err error
		if watch {
			start = monotime()
		}
		hedges, hedgeWon := 0, false
		if db.cfg.hedging != nil && rt.hedgeable() {
			a, n := db.hedgedRead(ctx, rt, query, prep, args, wantRow, &tried)
			hedges, hedgeWon = n, a.r != rt.r
			if rows, row, err, rt.r = a.rows, a.row, a.err, a.r; err == nil {
				rt.r.count(shardOf(), true)
			}
		} else {
			c := rt.r.begin(rt.kind())
			// queryOn's text path, kept inline here: this is every plain
			// read's call.
			switch {
			case prep != nil:
				rows, row, err = queryOn(ctx, rt.r, query, prep, args, wantRow)
			case wantRow:
				row = rt.r.db.QueryRowContext(ctx, query, args...)
				err = row.Err()
			default:
				rows, err = rt.r.db.QueryContext(ctx, query, args...)
			}
			rt.r.end(ctx, c, err)
		}
		db.done(rt)
		if rt.pin == pinSchema {
			db.schemaEnd(ctx)
		}
		if err == nil {
			if watch {
				db.observeRead(ctx, o, rt, attempt, hedges, hedgeWon, start, nil, false)
			}
			db.served(ctx, rt)
			return rows, row, nil
		}
		next, ok := db.retryRoute(ctx, rt, err, query, &tried)
		if watch {
			db.observeRead(ctx, o, rt, attempt, hedges, hedgeWon, start, err, ok)
		}
		if !ok {
			if !rt.read {
				db.writeFailed(ctx, err)
			}
			if db.closed.Load() {
				return nil, nil, ErrClosed
			}
			return nil, row, err
		}
		rt = next
	}
}
