package rwsplit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Role discovery and fencing. With a dialect that reports roles, the nodes
// are a set whose roles can change: each round, the node that says it
// takes writes (PostgreSQL: not in recovery; MySQL/MariaDB: read_only off
// and replicating from nobody) is the primary. Epochs only move forward:
// on PostgreSQL a writable node on a lower timeline than the highest seen
// is fenced (never written to, not read from); two writable nodes that
// cannot be told apart (the same timeline, or MySQL/MariaDB, which has no
// timeline) make writes fail with ErrSplitBrain until one steps down. With
// the generic dialect the configured primary stays the primary.

// roleState is what the DB knows of roles and write outages. The health
// loop writes it, writes end an outage, and Stats reads it.
type roleState struct {
	maxTimeline    uint64        // highest PostgreSQL timeline seen on a writable node (health loop only)
	epochChanged   atomic.Bool   // a probe saw the primary's epoch change
	primaryChanges atomic.Uint64 // primary changes followed
	fencings       atomic.Uint64 // nodes fenced for taking writes on an old timeline
	splitBrains    atomic.Uint64 // times several writable nodes were seen
	troubleAt      atomic.Int64  // monotime the primary was last seen in trouble; 0 none
	lastOutage     atomic.Int64  // ns from trouble to the first write after the last change
}

// discoverRoles applies the nodes' reported roles (health goroutine only).
func (db *DB) discoverRoles(results []probeResult) {
	d := db.positions.Load()
	if !d.hasPositions() {
		return
	}
	cur := db.primary.Load()
	var writable []int
	for i, res := range results {
		if res.err != nil {
			if db.nodeList()[i] == cur {
				db.primaryTrouble()
			}
			continue
		}
		if !res.roleKnown {
			// It answers but does not say its role (a proxy, a user
			// without the privilege): nothing to learn from it.
			continue
		}
		r := db.nodeList()[i]
		if res.primary {
			writable = append(writable, i)
		} else if r.fenced.Swap(false) {
			db.cfg.logger.Info("rwsplit: fenced node is a replica now", "node", r.name)
			db.emit(NodeEvent{Node: r.name, Role: r.Role(), State: NodeUnfenced})
		}
	}
	top := writable
	if d.timelines {
		for _, i := range writable {
			if e := results[i].epoch; results[i].epochKnown && e.n > db.roles.maxTimeline {
				db.roles.maxTimeline = e.n
			}
		}
		top = top[:0:0]
		for _, i := range writable {
			r := db.nodeList()[i]
			if results[i].epochKnown && results[i].epoch.n < db.roles.maxTimeline {
				if !r.fenced.Swap(true) {
					db.roles.fencings.Add(1)
					db.cfg.logger.Error("rwsplit: node takes writes on an old timeline; fenced: no writes or reads go to it",
						"node", r.name, "timeline", results[i].epoch.n, "highest", db.roles.maxTimeline)
					db.emit(NodeEvent{Node: r.name, Role: r.Role(), State: NodeFenced})
				}
				continue
			}
			if results[i].epochKnown && r.fenced.Swap(false) {
				db.cfg.logger.Info("rwsplit: fenced node takes writes on the highest timeline; no longer fenced", "node", r.name, "timeline", db.roles.maxTimeline)
				db.emit(NodeEvent{Node: r.name, Role: r.Role(), State: NodeUnfenced})
			}
			top = append(top, i)
		}
	}
	if len(top) > 1 {
		top = db.withoutListedReplicas(top, cur)
	}
	switch len(top) {
	case 0:
		db.setWriteBlock(nil, "")
		if cur.fenced.Load() {
			db.primaryTrouble()
		}
	case 1:
		db.setWriteBlock(nil, "")
		if n := db.nodeList()[top[0]]; n != cur {
			db.switchPrimary(cur, n)
		}
	default:
		names := make([]string, len(top))
		for k, i := range top {
			names[k] = db.nodeList()[i].name
		}
		reason := strings.Join(names, ", ")
		db.setWriteBlock(fmt.Errorf("%w: %s", ErrSplitBrain, reason), reason)
	}
	// The primary answers and takes writes with no change pending: the
	// trouble, if any, is over, and must not count in a later outage.
	p := db.primary.Load()
	if !db.awaitingWrite.Load() && db.writeBlock.Load() == nil && !p.fenced.Load() {
		for i, r := range db.nodeList() {
			if r == p && results[i].err == nil && results[i].roleKnown && results[i].primary {
				db.roles.troubleAt.Store(0)
			}
		}
	}
	// Former primaries that now follow: replicas.
	for i, r := range db.nodeList() {
		if r != p && r.Role() == RolePrimary && results[i].err == nil && results[i].roleKnown && !results[i].primary {
			r.role.Store(int32(RoleReplica))
		}
	}
}

// withoutListedReplicas drops from top, the writable nodes of a round
// (indexes in the node list), those a discoverer lists as replicas, when
// the current primary cur is among them: such a node is most likely cur
// under another name (a DNS record of every pod, "localhost" beside
// "127.0.0.1"), not a second writer. It gets no reads either, as a
// replica that says it takes writes (see applyPosition).
func (db *DB) withoutListedReplicas(top []int, cur *Replica) []int {
	nodes := db.nodeList()
	if !slices.ContainsFunc(top, func(i int) bool { return nodes[i] == cur }) {
		return top
	}
	kept := top[:0:0]
	for _, i := range top {
		if nodes[i] == cur || !nodes[i].listedReplica.Load() {
			kept = append(kept, i)
		}
	}
	return kept
}

// setWriteBlock refuses writes with err (nil: accept them) and logs the
// change.
func (db *DB) setWriteBlock(err error, nodes string) {
	old := db.writeBlock.Load()
	if err == nil {
		if old != nil {
			db.writeBlock.Store(nil)
			db.cfg.logger.Info("rwsplit: one writable node again; writes accepted")
		}
		return
	}
	if old == nil {
		db.roles.splitBrains.Add(1)
		db.cfg.logger.Error("rwsplit: several nodes take writes and none can be told to be the primary; writes refused until one steps down", "nodes", nodes)
		db.primaryTrouble()
	}
	db.writeBlock.Store(&err)
}

// switchPrimary makes n the primary in place of old.
func (db *DB) switchPrimary(old, n *Replica) {
	now := monotime()
	n.role.Store(int32(RolePrimary))
	n.rampStart.Store(0)
	old.role.Store(int32(RoleReplica))
	db.primary.Store(n)
	db.roles.primaryChanges.Add(1)
	db.roles.troubleAt.CompareAndSwap(0, now)
	db.awaitingWrite.Store(true)
	db.cfg.logger.Info("rwsplit: primary changed", "from", old.name, "to", n.name)
	db.emit(PrimaryChanged{From: old.name, To: n.name})
	db.rebuild() // under health.mu, with the tracking of the calls it implies
}

// writer returns the node a write may go to: the primary, when it is up,
// writable as far as the probes know, not fenced and alone. Otherwise it
// fails at once with ErrNoPrimary (or ErrSplitBrain), or waits for a
// primary up to the WithPrimaryWait bound.
func (db *DB) writer(ctx context.Context) (*Replica, error) {
	if e := db.writeBlock.Load(); e == nil {
		if p := db.primary.Load(); p.writable() {
			return p, nil
		}
	}
	return db.awaitWriter(ctx)
}

// awaitWriter is writer when the primary was not writable at first sight.
func (db *DB) awaitWriter(ctx context.Context) (*Replica, error) {
	p, err := db.writable()
	if err == nil || db.cfg.primaryWait <= 0 {
		if err != nil {
			db.primaryTrouble()
		}
		return p, err
	}
	db.primaryTrouble()
	deadline := time.NewTimer(db.cfg.primaryWait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, err
		case <-tick.C:
			if p, err = db.writable(); err == nil {
				return p, nil
			}
		}
	}
}

func (db *DB) writable() (*Replica, error) {
	if e := db.writeBlock.Load(); e != nil {
		return nil, *e
	}
	p := db.primary.Load()
	if !p.writable() {
		return nil, ErrNoPrimary
	}
	return p, nil
}

// writable says whether the node may take writes as the primary: up,
// writable as far as the probes know, and not fenced.
func (r *Replica) writable() bool {
	return !r.fenced.Load() && r.healthy.Load() && r.probedPrimary.Load()
}

// wrote notes a successful write: the first after a primary change ends
// the write outage, which Stats reports.
func (db *DB) wrote() {
	if db.awaitingWrite.Load() {
		db.firstWrite()
	}
}

func (db *DB) firstWrite() {
	if db.awaitingWrite.CompareAndSwap(true, false) {
		if t := db.roles.troubleAt.Swap(0); t != 0 {
			d := monotime() - t
			db.roles.lastOutage.Store(d)
			db.emit(WriteOutage{Primary: db.primary.Load().name, Duration: time.Duration(d)})
		}
	}
}

// writeFailed reacts to a failed write: a connection failure or a "read
// only" refusal (the node was demoted) triggers an out-of-band probe of
// every node and the fast cadence.
func (db *DB) writeFailed(ctx context.Context, err error) {
	if isCallerDone(ctx, err) {
		return
	}
	if isReadOnlyRejection(err) || isNodeFault(ctx, err) {
		db.primaryTrouble()
	}
}

// primaryTrouble starts the fast probe cadence after a sign that the
// primary is gone or no longer writable, and notes when it was seen.
func (db *DB) primaryTrouble() {
	now := monotime()
	db.roles.troubleAt.CompareAndSwap(0, now)
	db.hurry(failoverFastPeriod)
}

// failoverFastPeriod is how long the health loop probes at its fast
// cadence after a sign of primary trouble.
const failoverFastPeriod = 10 * time.Second
