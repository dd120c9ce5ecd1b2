package rwsplit

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// The health goroutine. One per DB, started by New and stopped, together
// with every probe it started, by Close. Each round it probes every node
// concurrently, each probe under its own timeout; applies the results with
// hysteresis (a node leaves rotation after ejectAfter consecutive failures
// and returns after reinstateAfter consecutive successes); measures each
// replica's lag; and publishes a new snapshot of the eligible replicas
// when the set changed. Failures of real traffic count too: a node that
// fails calls ejectAfter times in a row leaves at once, without waiting
// for the next round.

// health is the health goroutine's state; the fields marked "loop only"
// are touched by the health goroutine alone.
type health struct {
	ctx    context.Context // cancelled by Close: stops the loop and its probes
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop has returned
	// discovering runs the discovery goroutine (discovery.go).
	discovering sync.WaitGroup
	kick        chan struct{} // asks for a round now (capacity 1)

	// fastUntil: until this monotime the loop probes at its fast cadence
	// (sessions are waiting for replicas to be seen to catch up).
	fastUntil atomic.Int64

	mu sync.Mutex // guards rebuilds of the snapshot

	// history holds the primary's recent positions with the time they
	// were read (loop only), to bound a replica's lag by the newest one
	// it covers.
	history    [historySize]positionSample
	historyLen int
	historyPos int
}

const historySize = 64

type positionSample struct {
	pos position
	at  int64 // monotime
}

func (db *DB) startHealth() {
	db.health.ctx, db.health.cancel = context.WithCancel(context.Background())
	db.health.done = make(chan struct{})
	db.health.kick = make(chan struct{}, 1)
	go db.healthLoop()
	if db.cfg.discovery != nil {
		db.health.discovering.Go(db.discoverLoop)
	}
}

// stopHealth stops the loop and waits for it and its probes.
func (db *DB) stopHealth() {
	db.health.cancel()
	<-db.health.done
	db.health.discovering.Wait()
	if db.auto != nil {
		db.auto.wg.Wait()
	}
	db.waits.mu.Lock()
	db.waits.stopped = true
	db.waits.mu.Unlock()
	db.waits.pollers.Wait()
}

func (db *DB) healthLoop() {
	defer close(db.health.done)
	t := time.NewTimer(0) // the first round at once
	defer t.Stop()
	for {
		select {
		case <-db.health.ctx.Done():
			return
		case <-t.C:
		case <-db.health.kick:
		case op := <-db.fleet.ops:
			op.done <- db.applyFleetOp(op)
			continue
		case listed := <-db.fleet.found:
			db.applyListing(listed)
			continue
		}
		db.probeRound()
		next := jitter(db.cfg.interval)
		if monotime() < db.health.fastUntil.Load() || db.schemaOpen.Load() {
			next = min(next, db.cfg.fastInterval())
		}
		t.Reset(next)
	}
}

// jitter spreads d by ±10% so that many handles do not probe in step.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// probeRound probes every node at once. Each node's liveness is applied
// as soon as its probe returns, so a hung node delays no other node's
// state; roles and lag are applied once all have answered, against the
// primary's position of this round.
func (db *DB) probeRound() {
	nodes := db.nodeList() // the health loop alone changes it, between rounds
	results := make([]probeResult, len(nodes))
	w := &probeWatch{db: db, nodes: nodes, overdue: make([]atomic.Bool, len(nodes)), done: make([]atomic.Bool, len(nodes))}
	var wg sync.WaitGroup
	for i, r := range nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(db.health.ctx, db.cfg.timeout())
			defer cancel()
			start := monotime()
			watch := time.AfterFunc(db.cfg.suspectAfter(), func() { w.late(i) })
			res := db.probe(ctx, r.monitor)
			watch.Stop()
			res.at = start
			if res.err != nil && ctx.Err() != nil && db.health.ctx.Err() == nil {
				res.err = errProbeTimeout
			}
			if db.health.ctx.Err() == nil { // closing: the result says nothing about the node
				w.answered(i, res.err == nil)
				results[i] = db.applyLiveness(r, res, monotime()-start)
			}
		})
	}
	wg.Wait()
	if db.health.ctx.Err() != nil {
		return
	}
	db.applyRound(results)
}

// probeWatch tells a hung node from a slow machine during a probe round:
// a node whose probe is still unanswered suspectAfter after it was sent,
// while another node's probe of the round has answered, is suspect: no new
// read goes to it until its probe answers. Between a freeze and the
// ejection that its probes' timeouts bring, this keeps reads off the node.
// When no probe has answered (the whole machine stalls), nobody is
// suspected.
type probeWatch struct {
	db      *DB
	mu      sync.Mutex
	any     bool          // a probe of the round has answered (guarded by mu)
	nodes   []*Replica    // the round's nodes
	overdue []atomic.Bool // the node's probe has outlived suspectAfter
	done    []atomic.Bool // the node's probe has returned
}

// late is the timer of node i's probe.
func (w *probeWatch) late(i int) {
	w.overdue[i].Store(true)
	w.mu.Lock()
	any := w.any
	w.mu.Unlock()
	if any && !w.done[i].Load() {
		w.db.suspect(w.nodes[i], true)
	}
}

// answered records node i's probe returning, ok if it succeeded.
func (w *probeWatch) answered(i int, ok bool) {
	w.done[i].Store(true)
	r := w.nodes[i]
	if !ok {
		return
	}
	w.db.suspect(r, false)
	w.mu.Lock()
	first := !w.any
	w.any = true
	w.mu.Unlock()
	if first {
		for j := range w.overdue {
			if w.overdue[j].Load() && !w.done[j].Load() {
				w.db.suspect(w.nodes[j], true)
			}
		}
	}
}

// suspect marks r as not answering its probe (or clears the mark) and
// rebuilds the snapshot when that changes.
func (db *DB) suspect(r *Replica, on bool) {
	if r.suspect.Swap(on) == on {
		return
	}
	if on {
		db.cfg.logger.Info("rwsplit: node leaves its probe unanswered while the others answer; no new reads go to it", "node", r.name)
	} else {
		db.cfg.logger.Info("rwsplit: node answers its probe again", "node", r.name)
	}
	db.rebuild()
}

// applyRound applies a round's results, each already passed through
// applyLiveness: roles, automatic promotion, positions and lag, and the
// snapshot of eligible replicas.
func (db *DB) applyRound(results []probeResult) {
	db.discoverRoles(results)
	if db.auto != nil {
		db.checkAutoFailover(results)
	}
	now := monotime()
	primary := db.primary.Load()
	var primaryPos *position
	for i, r := range db.nodeList() {
		if r == primary && results[i].err == nil && results[i].posKnown {
			primaryPos = &results[i].pos
			db.health.record(results[i].pos, now)
		}
	}
	for i, r := range db.nodeList() {
		if results[i].err == nil {
			db.applyPosition(r, results[i], primaryPos, now)
		}
	}
	db.clearSchemaFloor()
	db.rebuild()
}

func (h *health) record(p position, at int64) {
	h.history[h.historyPos] = positionSample{pos: p, at: at}
	h.historyPos = (h.historyPos + 1) % historySize
	h.historyLen = min(h.historyLen+1, historySize)
}

// applyLiveness updates a node's health from one probe and returns the
// result to take its role and position from.
//
// Only a timeout or a connection-level error counts as a failure. Any other
// error (a proxy that does not know the probe's functions, a user without
// the privilege to read replication status) shows the node answering: it
// counts as alive, with role and lag unknown.
func (db *DB) applyLiveness(r *Replica, res probeResult, rtt int64) probeResult {
	if res.err != nil {
		r.lastErr.Store(errorText(res.err))
		var noConn *errNoConnection
		if res.err == errProbeTimeout || errors.As(res.err, &noConn) || isNodeFault(db.health.ctx, res.err) {
			r.okStreak.Store(0)
			// A probe that was overdue while the others answered (see
			// probeWatch) and then timed out is two signs of a hung host,
			// not one: out at once, so that the calls stuck on it are
			// closed and retried well within their callers' deadlines.
			hung := res.err == errProbeTimeout && r.suspect.Load()
			if int(r.failStreak.Add(1)) >= db.cfg.ejectAfter || hung {
				if r.healthy.Load() {
					db.setHealthy(r, false, res.err)
				} else {
					db.abortConns(r)
				}
			}
			return res
		}
		res = probeResult{primary: r.Role() == RolePrimary}
	}
	r.failStreak.Store(0)
	r.okStreak.Add(1)
	if now := monotime(); r.warm.Load() >= warmSamples && now-r.lastObs.Load() > int64(db.cfg.interval) {
		// No call has been timed on the node for an interval: the
		// probe's round trip is the freshest word on it, so that a node
		// the policy avoids is judged on how it answers now, not on the
		// samples (a connection's handshake, a pause) that made the
		// policy avoid it. A node still warming up is left to its calls,
		// which it gets, costing nothing yet: its first probe's round
		// trip includes opening the connection.
		r.observeIdle(rtt, now)
	}
	if !r.healthy.Load() && int(r.okStreak.Load()) >= db.cfg.reinstateAfter {
		db.setHealthy(r, true, nil)
	}
	return res
}

// applyPosition records a node's reported role and, for a replica, its lag.
func (db *DB) applyPosition(r *Replica, res probeResult, primaryPos *position, now int64) {
	if !res.roleKnown {
		res.primary = r.Role() == RolePrimary // no word from the node: as configured or discovered
	}
	if r.probedPrimary.Swap(res.primary) != res.primary && r.Role() == RoleReplica && res.primary {
		db.cfg.logger.Warn("rwsplit: a replica reports that it takes writes; no reads go to it", "node", r.name)
	}
	if r.Role() == RoleReplica {
		lag := int64(db.replicaLag(r, res, primaryPos, now))
		old := r.lag.Swap(lag)
		if db.cfg.maxLag > 0 && db.cfg.observer != nil {
			if was, is := lagOver(old, db.cfg.maxLag), lagOver(lag, db.cfg.maxLag); was != is {
				state := NodeCaughtUp
				if is {
					state = NodeLagging
				}
				db.emit(NodeEvent{Node: r.name, Role: RoleReplica, State: state, Lag: time.Duration(lag)})
			}
		}
	}
	if res.posKnown {
		np := &nodePosition{pos: res.pos, epoch: res.epoch, epochKnown: res.epochKnown, at: res.at}
		if r.Role() == RolePrimary && res.primary && res.epochKnown {
			if old := r.pos.Load(); old != nil && old.epochKnown && old.epoch != res.epoch {
				db.roles.epochChanged.Store(true)
			}
		}
		r.pos.Store(np)
		db.notifyPositions()
	}
}

// lagUnknown marks a lag that cannot be measured yet; lagBroken one of a
// replica whose replication is stopped.
const (
	lagUnknown = -1
	lagBroken  = math.MaxInt64
)

// replicaLag estimates how far behind the primary a replica is. Zero when
// it covers the primary's position of this round. Otherwise the smallest
// of the upper bounds the dialect gives: the server's own estimate
// (MySQL/MariaDB Seconds_Behind_*, plus the second it may round away), the age of the last replayed
// transaction (PostgreSQL), and the time since the newest recorded
// primary position the replica covers.
func (db *DB) replicaLag(r *Replica, res probeResult, primaryPos *position, now int64) time.Duration {
	if res.lagReported && res.secondsBehind < 0 {
		return lagBroken
	}
	d := db.positions.Load()
	if primaryPos != nil && res.posKnown {
		if d.progressCovers(res.pos, *primaryPos) {
			return 0
		}
	}
	lag := time.Duration(lagUnknown)
	tighten := func(d time.Duration) {
		if d >= 0 && (lag == lagUnknown || d < lag) {
			lag = d
		}
	}
	if res.lagReported {
		// Whole seconds from second-resolution timestamps: up to a second
		// more than it says.
		tighten(time.Duration(res.secondsBehind+1) * time.Second)
	}
	if res.replayAgeOK {
		tighten(res.replayAge)
	}
	if res.posKnown {
		h := &db.health
		for i := 1; i <= h.historyLen; i++ {
			s := h.history[(h.historyPos-i+historySize)%historySize]
			if d.progressCovers(res.pos, s.pos) {
				tighten(time.Duration(now - s.at))
				break
			}
		}
		if lag == lagUnknown && h.historyLen == historySize {
			// Behind every recorded position: at least this far.
			oldest := h.history[h.historyPos]
			lag = time.Duration(now - oldest.at)
		}
	}
	return lag
}

// setHealthy takes a node out of rotation or brings it back, logs it and
// republishes the snapshot.
func (db *DB) setHealthy(r *Replica, up bool, cause error) {
	if r.healthy.Swap(up) == up {
		return
	}
	if up {
		// Forget the latency of the failures (they were recorded with a
		// penalty): the node is measured afresh, and slow start meters
		// its return.
		r.ewma.Store(0)
		r.measured.Store(false)
		r.warm.Store(0)
		r.peak.Store(0)
		if db.cfg.slowStart > 0 && r.Role() == RoleReplica {
			r.rampStart.Store(max(monotime(), 1))
		}
		db.cfg.logger.Info("rwsplit: node up", "node", r.name, "role", r.Role().String())
		db.emit(NodeEvent{Node: r.name, Role: r.Role(), State: NodeReinstated})
	} else {
		// Only good probes after the ejection bring the node back,
		// whoever took it out: traffic may while its probes succeed.
		r.okStreak.Store(0)
		r.ejections.Add(1)
		db.cfg.logger.Info("rwsplit: node down", "node", r.name, "role", r.Role().String(), "err", errorText(cause))
		db.emit(NodeEvent{Node: r.name, Role: r.Role(), State: NodeEjected, Cause: errorText(cause)})
	}
	db.rebuild()
	if !up {
		db.abortConns(r)
	}
}

// abortConns closes the tracked connections of r, a node out of rotation
// (see WithConnTracker): calls stuck on it fail now, as connection errors;
// reads among them are retried elsewhere, writes fail. The health loop
// calls it again at every failed probe while the node stays down, for the
// connections opened since (database/sql opens one to retry a statement
// the driver had not sent, and it hangs in its handshake on a hung host).
func (db *DB) abortConns(r *Replica) {
	if db.cfg.tracker == nil {
		return
	}
	if n := db.cfg.tracker.abort(r.index); n > 0 {
		db.cfg.logger.Info("rwsplit: closed the connections of a node out of rotation", "node", r.name, "connections", n)
	}
}

// nodeFailed records a connection-level failure of real traffic; enough
// of them in a row take the node out at once.
func (db *DB) nodeFailed(r *Replica, err error) {
	if int(r.failStreak.Add(1)) >= db.cfg.ejectAfter && r.healthy.Load() {
		r.lastErr.Store(errorText(err))
		db.setHealthy(r, false, err)
		db.kick() // have the next round sooner, to learn who else is affected
	}
}

// rebuild publishes a new snapshot if the set of eligible replicas
// changed.
func (db *DB) rebuild() {
	db.health.mu.Lock()
	defer db.health.mu.Unlock()
	var eligible []*Replica
	for _, r := range db.nodeList() {
		if db.eligible(r) {
			eligible = append(eligible, r)
		}
	}
	old := db.snap.Load()
	if sameReplicas(old.replicas, eligible) {
		return
	}
	db.snap.Store(newSnapshot(db.cfg.policy, eligible))
	db.setTracking(eligible)
	if len(eligible) == 0 && db.replicaCount > 0 {
		db.cfg.logger.Warn("rwsplit: no replica eligible; reads go to the primary within the fallback limit")
	} else if len(old.replicas) == 0 && len(eligible) > 0 && db.replicaCount > 0 {
		db.cfg.logger.Info("rwsplit: replicas eligible again", "count", len(eligible))
	}
}

// setTracking has the nodes of the eligible set count their calls in
// their shared in-flight counter when the policy's picker reads it on
// every pick (LeastInFlight with two replicas or more to choose from),
// and in their shards otherwise.
func (db *DB) setTracking(eligible []*Replica) {
	_, reads := db.cfg.policy.(loadAware)
	loadAware := reads && len(eligible) >= 2
	for _, r := range db.nodeList() {
		want := false
		if loadAware {
			for _, e := range eligible {
				want = want || e == r
			}
		}
		if r.trackGlobal.Load() != want {
			r.trackGlobal.Store(want)
		}
	}
}

// eligible reports whether reads may go to r.
func (db *DB) eligible(r *Replica) bool {
	if r.Role() != RoleReplica || !r.healthy.Load() || r.probedPrimary.Load() || r.fenced.Load() || r.suspect.Load() || r.removed.Load() {
		return false
	}
	return db.cfg.maxLag <= 0 || !lagOver(r.lag.Load(), db.cfg.maxLag)
}

// lagOver says whether a measured lag keeps a replica's reads off under
// the bound max (as eligible decides).
func lagOver(lag int64, max time.Duration) bool {
	return lag != lagUnknown && lag > int64(max)
}

func sameReplicas(a, b []*Replica) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// kick asks the health loop for a round now, unless one is asked for
// already; it never blocks.
func (db *DB) kick() {
	select {
	case db.health.kick <- struct{}{}:
	default:
	}
}

// hurry has the health loop probe at its fast cadence for d from now
// (never shortening a longer spell), and start a round at once if it was
// probing at its normal cadence: sessions waiting for replicas to be seen
// to catch up, or a sign of trouble with the primary.
func (db *DB) hurry(d time.Duration) {
	now := monotime()
	until := now + int64(d)
	for {
		old := db.health.fastUntil.Load()
		if old >= until {
			return
		}
		if db.health.fastUntil.CompareAndSwap(old, until) {
			if old < now {
				db.kick()
			}
			return
		}
	}
}
