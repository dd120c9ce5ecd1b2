package rwsplit

import (
	"context"
	"sync"
	"sync/atomic"
)

// Schema changes. A read right after a migration must not go to a replica
// that has not replayed it: the table may not exist there yet. When a
// statement that changes the schema (sqlclass.IsSchemaChange: CREATE,
// ALTER, DROP, TRUNCATE, RENAME, COMMENT, GRANT, REVOKE) runs through the
// DB, the primary's position after it becomes a floor for every read of
// the DB: a read goes only to a replica whose position covers it, else to
// the primary, until every replica has passed it. While the statement
// runs, and until its position is read, reads go to the primary. Without
// replication positions the floor is a time: reads go to the primary for
// WithSessionWindow after the change. While a floor is open the health
// loop probes at its fast cadence, so that reads return to a replica soon
// after it replays the change.
//
// Seen: schema changes made with ExecContext and QueryContext (and their
// forms without a context), prepared statements, and everything on the
// routing *sql.DB (DB.Connector), whose transactions and connections
// BeginTx, RunInTx and Conn hand out: in a transaction, reads go to the
// primary from the change to the transaction's end, and the floor is the
// primary's position after its commit or rollback; on a connection, the
// floor is set after the statement. Not seen: other processes' changes,
// and a transaction begun with BEGIN sent as SQL text on a connection,
// whose commit the floor may precede.

// schemaState is the floor schema changes set for reads. Writers: the
// calls that change the schema and the health loop, which clears the
// floor; every read checks open.
type schemaState struct {
	mu      sync.Mutex                  // serialises changes of pending, floor and DB.schemaOpen
	pending atomic.Int32                // schema changes sent whose position is not recorded yet
	floor   atomic.Pointer[schemaFloor] // reads go only to replicas at or past it; nil: none
	reruns  atomic.Uint64               // reads a replica refused for an unknown table or column, re-run on the primary
}

// schemaFloor is where the last schema changes left the primary.
type schemaFloor struct {
	d       *dialect
	pos     position // the primary's position after the changes; set when hasPos
	hasPos  bool
	ep      epoch
	epKnown bool
	until   int64 // without a position: monotime until which reads go to the primary
}

// schemaBegin marks a schema change about to be sent: reads go to the
// primary until schemaEnd has recorded where it left the primary.
func (db *DB) schemaBegin() {
	s := &db.schema
	s.mu.Lock()
	s.pending.Add(1)
	db.schemaOpen.Store(true)
	s.mu.Unlock()
}

// schemaEnd records the primary's position after a schema change (ctx is
// the change's) as the floor of reads, merged with the floor already
// open. It reads the position whether the change succeeded or not: a
// failed statement may have changed something (MySQL commits DDL at once).
func (db *DB) schemaEnd(ctx context.Context) {
	f := &schemaFloor{}
	d := db.positions.Load()
	if d.hasPositions() {
		if pos, ep, epKnown, err := db.primaryPosition(ctx, db.primary.Load()); err == nil {
			f.d, f.pos, f.hasPos, f.ep, f.epKnown = db.positions.Load(), pos, true, ep, epKnown
		}
	}
	if !f.hasPos {
		f.until = monotime() + int64(db.cfg.sessionWindow)
	}
	s := &db.schema
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.floor.Load(); old != nil {
		f = mergeFloors(old, f)
	}
	s.floor.Store(f)
	s.pending.Add(-1)
	db.hurry(2 * db.cfg.interval)
}

// mergeFloors returns a floor at least as high as a and b.
func mergeFloors(a, b *schemaFloor) *schemaFloor {
	out := &schemaFloor{until: max(a.until, b.until)}
	switch {
	case a.hasPos && b.hasPos && a.d == b.d && !(a.epKnown && b.epKnown && a.ep != b.ep):
		out.d, out.pos, out.hasPos = b.d, b.d.merge(a.pos, b.pos), true
		out.ep, out.epKnown = b.ep, b.epKnown || a.epKnown
		if !b.epKnown {
			out.ep = a.ep
		}
	case b.hasPos:
		// Another history (a failover) or no position before: the newer
		// change's position, and the older window if it had one.
		out.d, out.pos, out.hasPos, out.ep, out.epKnown = b.d, b.pos, true, b.ep, b.epKnown
	case a.hasPos:
		out.d, out.pos, out.hasPos, out.ep, out.epKnown = a.d, a.pos, true, a.ep, a.epKnown
	}
	return out
}

// schemaAllows reports whether a read may go to replica r under the
// schema floor; it is called only while db.schemaOpen is set.
func (db *DB) schemaAllows(r *Replica) bool {
	s := &db.schema
	if s.pending.Load() > 0 {
		return false
	}
	f := s.floor.Load()
	if f == nil {
		return true
	}
	return f.passedBy(r)
}

// passedBy reports whether node r has replayed the changes of the floor,
// as its last probe or position read says.
func (f *schemaFloor) passedBy(r *Replica) bool {
	if !f.hasPos {
		return monotime() >= f.until
	}
	np := r.pos.Load()
	if np == nil {
		return false
	}
	if f.epKnown && np.epochKnown && np.epoch != f.ep {
		return false
	}
	return f.d.historyCovers(np.pos, f.pos)
}

// clearSchemaFloor closes the floor once every replica has passed it (or
// its window is over); the health loop calls it after each round.
func (db *DB) clearSchemaFloor() {
	s := &db.schema
	f := s.floor.Load()
	if f == nil {
		return
	}
	for _, r := range db.nodeList() {
		if r.Role() == RoleReplica && !f.passedBy(r) {
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.floor.CompareAndSwap(f, nil) && s.pending.Load() == 0 {
		db.schemaOpen.Store(false)
		db.cfg.logger.Debug("rwsplit: every replica has replayed the schema changes; reads spread again")
	}
}

// schemaAllowsAny is schemaAllows for callers that have not checked
// DB.schemaOpen.
func (db *DB) schemaAllowsAny(r *Replica) bool {
	return !db.schemaOpen.Load() || db.schemaAllows(r)
}

// schemaNewerThan reports whether a schema change is known that replica r
// has not replayed: a read it refused for an unknown table or column is
// then re-run on the primary.
func (db *DB) schemaNewerThan(r *Replica) bool {
	return db.schemaOpen.Load() && !db.schemaAllows(r)
}
