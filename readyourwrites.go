package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Read-your-writes. A Session remembers the primary's position after each
// of its writes (PostgreSQL: the WAL insert LSN; MariaDB: @@gtid_binlog_pos;
// MySQL: @@gtid_executed) and the primary's epoch (timeline, server_id,
// server_uuid). A read with the session goes to a replica whose position,
// as the health probes last read it, covers the session's; else to the
// primary. The session also keeps reads monotonic: it stays on the node it
// last read from while that node is eligible, and moves only to a node
// proven at least as far along as that node was after the read, or to the
// primary.

// A Session is one client's view of the data: it reads its own writes and
// never reads older data than it read before, while being served by
// replicas whenever they have caught up. Attach it to a context with
// [WithSession]; carry it across processes with [Session.Token] and
// [ResumeSession]. A Session is safe for concurrent use, and may be used
// with several goroutines at once (50 concurrent requests of one user, for
// instance); it is meant for one DB (one cluster).
//
// Which writes a session sees:
//   - ExecContext: the position is read from the primary right after the
//     statement returns (one extra round trip), since an autocommit
//     statement has committed when it returns.
//   - [DB.RunInTx]: the transaction is committed and then the position read:
//     the recommended way to write in a transaction.
//   - A writing QueryContext, BeginTx, Conn or PrepareContext: rwsplit cannot
//     see when these commit (after the rows are read, at Commit, ...). The
//     session is then pending: every read with it first reads the
//     primary's current position (one round trip), until the context of
//     that call is done or [Session.WritesDone] is called; then one more
//     read resolves it and the session is back to cached positions.
//
// With a dialect that has no positions (generic drivers), a session reads
// from the primary for a time window after its last write
// ([WithSessionWindow]): weaker, since a replica may lag more than that.
type Session struct {
	mu      sync.Mutex
	kind    *dialect // the dialect of need; nil until the first position
	need    position // the session's writes and resolved reads
	hasNeed bool
	ep      epoch // the primary's epoch at need
	epKnown bool

	lastWrite time.Time // the last write (time-window fallback)
	pending   int       // contexts with open writes whose commit rwsplit cannot see
	// pendingCtxs holds those contexts by Done channel (nil: one that
	// never ends), each with the stop of its callback.
	pendingCtxs map[<-chan struct{}]func() bool
	resolve     bool   // read the primary's position at the next read
	rebase      bool   // replace need by the primary's position at the next resolve
	gen         uint64 // bumped when a pending write ends

	// Monotonic reads: the node the session last read from and when that
	// read returned; settled once a probe sent after it has read the
	// node's position.
	node       *Replica
	nodeAt     int64
	lastSettle int64 // monotime of the last settleNow round trip

	writes  uint64 // writes recorded: the HTTP middleware sets a cookie when it grows
	key     []byte // signing key, learned from the DB that recorded a write
	resumed *resumedToken
}

// NewSession returns an empty session: its first reads may go to any
// replica.
func NewSession() *Session { return &Session{} }

// WritesDone marks every write made with the session through a
// QueryContext, BeginTx, Conn or PrepareContext as finished (committed or
// not): reads stop resolving the primary's position on each call after one
// last resolution. Call it after committing a transaction begun with a
// context that stays alive (context.Background, say).
func (s *Session) WritesDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending > 0 || s.resolve {
		s.dropPendingLocked()
		s.resolve = true
		s.gen++
	}
}

// dropPendingLocked forgets every pending write and stops the callbacks
// on their contexts; s.mu held.
func (s *Session) dropPendingLocked() {
	for _, stop := range s.pendingCtxs {
		if stop != nil {
			stop()
		}
	}
	s.pendingCtxs = nil
	s.pending = 0
}

// beginPending marks a write whose commit rwsplit cannot see, open until
// ctx is done. The writes made with one context (one Done channel) are
// open together and end together: they hold one callback on it, however
// many there are, so that a long-lived context does not gather one per
// write.
func (s *Session) beginPending(db *DB, ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.learnKey(db)
	s.writes++
	s.lastWrite = time.Now()
	done := ctx.Done() // nil: a context that never ends, pending until WritesDone
	if _, open := s.pendingCtxs[done]; open {
		return
	}
	if s.pendingCtxs == nil {
		s.pendingCtxs = make(map[<-chan struct{}]func() bool)
	}
	var stop func() bool
	if done != nil {
		// If ctx is done already, the callback runs at once, on its own
		// goroutine, and waits for s.mu: the entry is in place by then.
		stop = context.AfterFunc(ctx, func() { s.endPending(done) })
	}
	s.pendingCtxs[done] = stop
	s.pending++
}

// endPending ends the pending writes made with the context whose Done
// channel is done.
func (s *Session) endPending(done <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, open := s.pendingCtxs[done]; !open {
		return // WritesDone came first
	}
	delete(s.pendingCtxs, done)
	s.pending--
	s.resolve = true
	s.lastWrite = time.Now()
	s.gen++
}

// sessionView is what a read needs of a session, copied under its lock.
type sessionView struct {
	need      position
	hasNeed   bool
	ep        epoch
	epKnown   bool
	node      *Replica
	nodeAt    int64
	lastWrite time.Time
	unsure    bool // pending or to resolve: the primary's position is needed first
	gen       uint64
}

func (s *Session) view() sessionView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sessionView{
		need: s.need, hasNeed: s.hasNeed, ep: s.ep, epKnown: s.epKnown,
		node: s.node, nodeAt: s.nodeAt, lastWrite: s.lastWrite,
		unsure: s.pending > 0 || s.resolve || s.rebase, gen: s.gen,
	}
}

// advance merges a position the session must see from now on. A position
// of another epoch than the session's replaces it (the session's old
// position means nothing in the new history).
func (s *Session) advance(d *dialect, p position, ep epoch, epKnown bool) {
	if s.hasNeed && s.kind == d && !(epKnown && s.epKnown && ep != s.ep) && !s.rebase {
		p = d.merge(s.need, p)
	}
	s.kind, s.need, s.hasNeed = d, p, true
	if epKnown {
		s.ep, s.epKnown = ep, true
	}
	s.rebase = false
}

// recordWrite records the primary's position after a write.
func (s *Session) recordWrite(db *DB, d *dialect, p position, ep epoch, epKnown bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(d, p, ep, epKnown)
	s.writes++
	s.lastWrite = time.Now()
	s.learnKey(db)
}

// learnKey makes the session sign its tokens with db's key, if db has
// one; s.mu held.
func (s *Session) learnKey(db *DB) {
	if db.cfg.sessionKey != nil {
		s.key = db.cfg.sessionKey
	}
}

// markUnsure makes the next read resolve the primary's position: a write
// whose position could not be read.
func (s *Session) markUnsure(db *DB) {
	s.mu.Lock()
	s.learnKey(db)
	s.resolve = true
	s.writes++
	s.lastWrite = time.Now()
	s.gen++
	s.mu.Unlock()
}

// resolved records the primary's position read at the start of a session
// read; it settles a pending write that ended before gen.
func (s *Session) resolved(d *dialect, p position, ep epoch, epKnown bool, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(d, p, ep, epKnown)
	if s.gen == gen {
		s.resolve = false
	}
}

// noteRead records the node a session read was served by.
func (s *Session) noteRead(r *Replica) {
	now := monotime()
	s.mu.Lock()
	s.node, s.nodeAt = r, now
	s.mu.Unlock()
}

// settleFloor merges the position a probe read after the session's last
// read into the session: the node had at most that much when it served
// the read. It returns false when no such probe has answered yet.
func (s *Session) settleFloor(d *dialect, v *sessionView) bool {
	if v.node == nil {
		return true
	}
	np := v.node.pos.Load()
	if np == nil || np.at < v.nodeAt {
		return false
	}
	s.mu.Lock()
	if s.node == v.node && s.nodeAt == v.nodeAt && !(np.epochKnown && s.epKnown && np.epoch != s.ep) {
		if !s.hasNeed || s.kind == d {
			s.advance(d, np.pos, np.epoch, np.epochKnown && !s.epKnown && v.node.Role() == RolePrimary)
		}
		v.need, v.hasNeed = s.need, s.hasNeed
	}
	s.mu.Unlock()
	return true
}

// sessionCovers reports whether replica r is proven to have applied
// everything session view v must see.
func (db *DB) sessionCovers(r *Replica, d *dialect, v *sessionView) bool {
	if !db.schemaAllowsAny(r) {
		return false
	}
	if !v.hasNeed {
		return true
	}
	np := r.pos.Load()
	if np == nil {
		return false
	}
	if v.epKnown {
		switch {
		case np.epochKnown:
			if np.epoch != v.ep {
				return false
			}
		case d.timelines && db.roles.epochChanged.Load():
			// A standby that does not show its timeline (no
			// pg_read_all_stats) proves nothing once a promotion was
			// seen.
			return false
		}
	}
	return d.historyCovers(np.pos, v.need)
}

// routeSession picks the node for a read that must see session s.
func (db *DB) routeSession(ctx context.Context, s *Session, query string, tried *triedNodes) (route, error) {
	db.adopt(ctx, s)
	d := db.positions.Load()
	p := db.primary.Load()
	v := s.view()
	if !d.hasPositions() {
		if v.unsure || time.Since(v.lastWrite) < db.cfg.sessionWindow {
			return db.sessionPrimary(p)
		}
		return db.routeReplica(ctx, query, tried)
	}
	if v.unsure {
		pos, ep, epKnown, err := db.primaryPosition(ctx, p)
		if err != nil {
			// The primary has everything: read there.
			return db.sessionPrimary(p)
		}
		s.resolved(d, pos, ep, epKnown, v.gen)
		v = s.view()
	}
	snap := db.snap.Load()
	if len(snap.replicas) == 0 {
		return db.routeReplica(ctx, query, tried)
	}
	sticky := v.node
	settled := s.settleFloor(d, &v)
	// Stay on the node of the last read while it is eligible and covers
	// the session: positions only move forward on one node.
	if sticky != nil && sticky != p && !tried.has(sticky) && snap.has(sticky) && db.sessionCovers(sticky, d, &v) {
		return db.sessionReplica(sticky), nil
	}
	if !settled {
		// The last read's node may have had more than its cached position
		// when it served the read: only the primary is proven to have as
		// much, until a probe sent after the read settles it. A session
		// that reads more often than the probes would never settle; when
		// moving looks worth a round trip (a wait is allowed, or a replica
		// had caught up with the primary at the last probe), read the
		// primary's position now instead: it bounds what the last read
		// saw. At most once per fast probe interval per session.
		if !db.settleNow(ctx, s, d, p, snap, &v) {
			db.hurry(2 * db.cfg.interval)
			return db.sessionPrimary(p)
		}
	}
	if r := snap.pick(PickInfo{Ctx: ctx, Query: query}); r != nil && !tried.has(r) && db.sessionCovers(r, d, &v) {
		return db.sessionReplica(r), nil
	}
	n := len(snap.replicas)
	off := rand.IntN(n)
	for i := range n {
		r := snap.replicas[(off+i)%n]
		if !tried.has(r) && db.sessionCovers(r, d, &v) {
			return db.sessionReplica(r), nil
		}
	}
	if r := db.awaitCoverage(ctx, snap, d, &v, tried); r != nil {
		return db.sessionReplica(r), nil
	}
	db.hurry(2 * db.cfg.interval)
	return db.sessionPrimary(p)
}

// settleNow settles the floor of session view v by reading the primary's
// position, when allowed and worthwhile; it reports whether v is settled.
func (db *DB) settleNow(ctx context.Context, s *Session, d *dialect, p *Replica, snap *snapshot, v *sessionView) bool {
	worth := db.cfg.sessionWait > 0
	if !worth {
		if pp := p.pos.Load(); pp != nil {
			for _, r := range snap.replicas {
				if rp := r.pos.Load(); rp != nil && rp.at >= pp.at && d.historyCovers(rp.pos, pp.pos) {
					worth = true
					break
				}
			}
		}
	}
	now := monotime()
	s.mu.Lock()
	if !worth || now-s.lastSettle < int64(db.cfg.fastInterval()) {
		s.mu.Unlock()
		return false
	}
	s.lastSettle = now
	s.mu.Unlock()
	pos, ep, epKnown, err := db.primaryPosition(ctx, p)
	if err != nil {
		return false
	}
	s.mu.Lock()
	s.advance(d, pos, ep, epKnown)
	if s.node == v.node && s.nodeAt == v.nodeAt {
		s.node = nil
	}
	v.need, v.hasNeed, v.ep, v.epKnown, v.node = s.need, s.hasNeed, s.ep, s.epKnown, nil
	s.mu.Unlock()
	return true
}

func (db *DB) sessionReplica(r *Replica) route {
	db.counts.sessionReplicaReads.Add(1)
	return route{r: r, read: true, pin: pinSession}
}

func (db *DB) sessionPrimary(p *Replica) (route, error) {
	if p.fenced.Load() {
		return route{}, ErrNoPrimary
	}
	db.counts.sessionPrimaryReads.Add(1)
	return route{r: p, read: true, pin: pinSession}, nil
}

// afterWrite records a successful write made with o: the session's
// position, and the write concern's wait.
func (db *DB) afterWrite(ctx context.Context, o *callOptions, res sql.Result) (sql.Result, error) {
	d := db.positions.Load()
	if !d.hasPositions() && db.positions.known.Load() {
		if o.session != nil {
			o.session.markWrite(db)
		}
		if o.concern != nil {
			return res, &WriteConcernError{Wanted: o.concern.Replicas, Err: errors.New("the dialect has no replication positions")}
		}
		return res, nil
	}
	p := db.primary.Load()
	pos, ep, epKnown, err := db.primaryPosition(ctx, p)
	if err != nil {
		if o.session != nil {
			o.session.markUnsure(db)
		}
		if o.concern != nil {
			return res, &WriteConcernError{Wanted: o.concern.Replicas, Err: fmt.Errorf("reading the primary's position: %w", err)}
		}
		return res, nil
	}
	d = db.positions.Load()
	if o.session != nil {
		o.session.recordWrite(db, d, pos, ep, epKnown)
	}
	if o.concern != nil {
		if err := db.awaitReplicas(ctx, d, pos, *o.concern); err != nil {
			return res, err
		}
	}
	return res, nil
}

// markWrite records a write for the time-window fallback.
func (s *Session) markWrite(db *DB) {
	s.mu.Lock()
	s.learnKey(db)
	s.writes++
	s.lastWrite = time.Now()
	s.mu.Unlock()
}

// RunInTx runs fn in a transaction on the primary and commits it if fn
// returns nil (rolls it back otherwise, or if fn panics). With a session in
// ctx, the primary's position is read after the commit, so the session's
// next reads see the transaction without the per-read cost of a pending
// write: the recommended way to write in a transaction with a session.
func (db *DB) RunInTx(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) (err error) {
	if o := optionsOf(ctx); o != nil && o.concern != nil {
		if err := o.concern.check("run in tx"); err != nil {
			return err
		}
	}
	router, err := db.routerDB()
	if err != nil {
		return err
	}
	// The commit's position is recorded below: the transaction leaves the
	// session of ctx no pending write.
	tx, err := router.BeginTx(context.WithValue(ctx, recordsCommitKey{}, true), opts)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return errors.Join(err, rerr)
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		if o := optionsOf(ctx); o != nil && o.session != nil {
			o.session.markUnsure(db) // the commit may have happened
		}
		return err
	}
	if o := optionsOf(ctx); o != nil && (o.session != nil || o.concern != nil) && (opts == nil || !opts.ReadOnly) {
		_, err := db.afterWrite(ctx, o, nil)
		return err
	}
	return nil
}

// wrote returns how many writes the session has recorded; the HTTP
// middleware compares it before and after a request.
func (s *Session) wrote() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}
