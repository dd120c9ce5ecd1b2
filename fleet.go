package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A DB's node set can change while it serves: [DB.AddNode] and
// [DB.RemoveNode] change it by hand, and a [Discoverer] given with
// [WithDiscovery] changes it to what a source of topology (Patroni, DNS)
// lists. Every change is applied by the health goroutine between probe
// rounds, which alone replaces the node list; calls read it through an
// atomic pointer. A node that joins is out of rotation until its probes
// pass ([WithHysteresis]), then ramps up ([WithSlowStart]); a node that
// leaves gets no new call at once, and its pool is closed once the calls
// in flight on it have returned.

// NodeSpec is a node to add to a running DB with [DB.AddNode].
type NodeSpec struct {
	// Name names the node in Stats, logs and events; it must differ from
	// every other node's. By convention host:port, as [Open] names nodes.
	Name string
	// DB is the node's handle. The DB owns it from then on and closes it
	// when the node is removed or the DB closed.
	DB *sql.DB
	// Monitor is the handle the health probes use (see [WithMonitor]);
	// nil: DB. Owned by the DB as DB is.
	Monitor *sql.DB
	// Weight is the node's weight under [Weighted]; zero means 1.
	Weight int
	// Admin is the handle [WithAutoFailover] promotes or repoints the
	// node with, and Addr its host:port as the other replicas reach it;
	// without Admin the node is never promoted nor repointed. Owned by
	// the DB as DB is.
	Admin *sql.DB
	Addr  string
}

// ErrNodeExists is returned by [DB.AddNode] for a name or handle that a
// node of the DB has already, and ErrNoNode by [DB.RemoveNode] for a name
// that none has.
var (
	ErrNodeExists = errors.New("rwsplit: a node with that name or handle exists")
	ErrNoNode     = errors.New("rwsplit: no node with that name")
)

// fleet is what the DB keeps to change its node set.
type fleet struct {
	ops    chan fleetOp // to the health loop
	found  chan []DiscoveredNode
	next   atomic.Int64   // the index of the next node to join
	drains sync.WaitGroup // removed nodes waiting for their calls to return
	disco  discoveryState
}

// fleetOp asks the health loop to add a node or remove one by name.
type fleetOp struct {
	add    *Replica
	remove string
	done   chan error
}

// AddNode adds a node to the DB while it serves. Its pool gets the
// settings made with the DB's Set... methods so far. The node is probed at
// once and then at the fast cadence (a tenth of the health interval); it
// takes reads once reinstateAfter probes in a row have passed
// ([WithHysteresis]), ramping up over [WithSlowStart], and becomes the
// primary only when its own probe says it takes writes and no other node
// does (as any node's). AddNode returns once the node is part of the set
// (it is in [DB.Stats]), not once it serves.
//
// It returns an error, and takes ownership of nothing, when n has no name
// or handle, a name or handle of another node ([ErrNodeExists]), a driver
// of another dialect than the DB's, or the DB is closed ([ErrClosed]).
// With [WithDiscovery], the discoverer's next listing removes a node it
// does not list.
func (db *DB) AddNode(ctx context.Context, n NodeSpec) error {
	if db.closed.Load() {
		return ErrClosed
	}
	switch {
	case n.Name == "":
		return configError("add node", "the node has no name")
	case n.DB == nil:
		return configError("add node", "node %q has no handle", n.Name)
	case n.Weight < 0:
		return configError("add node", "node %q has a negative weight", n.Name)
	case db.cfg.dialect == "" && driverDialect(n.DB.Driver()) != db.dialect:
		return configError("add node", "node %q uses a %s driver but the DB a %s one", n.Name, driverDialect(n.DB.Driver()).name, db.dialect.name)
	}
	return db.fleetDo(ctx, fleetOp{add: db.newNode(int(db.fleet.next.Add(1)-1), n)})
}

// RemoveNode removes the named node from the DB while it serves: no new
// call goes to it from when RemoveNode returns, the calls in flight on it
// finish, and then its handles are closed; its row leaves [DB.Stats] at
// once. The current primary cannot be removed: remove it once another node
// has taken over. It returns [ErrNoNode] for an unknown name, and
// [ErrClosed] after Close.
func (db *DB) RemoveNode(ctx context.Context, name string) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return db.fleetDo(ctx, fleetOp{remove: name})
}

// fleetDo hands op to the health loop and waits for its answer.
func (db *DB) fleetDo(ctx context.Context, op fleetOp) error {
	op.done = make(chan error, 1)
	select {
	case db.fleet.ops <- op:
	case <-ctx.Done():
		op.discard()
		return ctx.Err()
	case <-db.health.ctx.Done():
		op.discard()
		return ErrClosed
	}
	select {
	case err := <-op.done:
		return err
	case <-db.health.ctx.Done():
		// The loop returned without answering: Close closes what it
		// holds, the node's handles included if it joined.
		return ErrClosed
	}
}

// discard closes the handles of a node that never joined.
func (op fleetOp) discard() {
	if op.add != nil {
		op.add.closeHandles()
	}
}

// newNode builds the Replica of a node that joins as the index-th: a
// replica, out of rotation until its probes pass.
func (db *DB) newNode(index int, n NodeSpec) *Replica {
	r := &Replica{name: n.Name, db: n.DB, monitor: n.DB, owner: db, weight: max(n.Weight, 1),
		index: index, admin: n.Admin, addr: n.Addr}
	if n.Monitor != nil {
		r.monitor = n.Monitor
	}
	r.lag.Store(lagUnknown)
	r.role.Store(int32(RoleReplica))
	return r
}

// applyFleetOp applies op (health loop only).
func (db *DB) applyFleetOp(op fleetOp) error {
	if op.add != nil {
		err := db.join(op.add)
		if err != nil {
			op.discard()
		}
		return err
	}
	return db.leave(op.remove)
}

// join adds r to the node set (health loop only).
func (db *DB) join(r *Replica) error {
	nodes := db.nodeList()
	for _, x := range nodes {
		if x.name == r.name || x.db == r.db || x.monitor == r.monitor || (r.admin != nil && x.admin == r.admin) {
			return fmt.Errorf("%w: %q", ErrNodeExists, r.name)
		}
	}
	next := append(nodes[:len(nodes):len(nodes)], r)
	db.pools.mu.Lock()
	db.pools.applyLocked(r.db)
	db.nodes.Store(&next)
	db.pools.mu.Unlock()
	db.cfg.logger.Info("rwsplit: node joined", "node", r.name)
	db.emit(NodeEvent{Node: r.name, Role: r.Role(), State: NodeJoined})
	// Probe it now, and at the fast cadence until its probes can have
	// brought it in: a fleet's long health interval would keep it out
	// for that many intervals.
	db.hurry(time.Duration(db.cfg.reinstateAfter+1) * db.cfg.fastInterval())
	return nil
}

// leave removes the named node from the node set (health loop only) and
// closes its handles once its calls have returned.
func (db *DB) leave(name string) error {
	nodes := db.nodeList()
	i := -1
	for j, x := range nodes {
		if x.name == name {
			i = j
		}
	}
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrNoNode, name)
	}
	r := nodes[i]
	if r == db.primary.Load() {
		return fmt.Errorf("rwsplit: node %q is the primary: remove it once another node has taken over", name)
	}
	next := make([]*Replica, 0, len(nodes)-1)
	next = append(append(next, nodes[:i]...), nodes[i+1:]...)
	db.nodes.Store(&next)
	r.removed.Store(true)
	db.rebuild()
	db.cfg.logger.Info("rwsplit: node left", "node", r.name)
	db.emit(NodeEvent{Node: r.name, Role: r.Role(), State: NodeLeft})
	db.fleet.drains.Go(func() { db.drain(r) })
	return nil
}

// drainGrace is how long a node that left keeps its pool before the
// in-flight calls are counted: a call that picked it from the last
// snapshot has begun by then.
const drainGrace = 100 * time.Millisecond

// drain waits for the calls in flight on r, a node that left, to return,
// then closes its handles; Close cuts the wait short.
func (db *DB) drain(r *Replica) {
	t := time.NewTimer(drainGrace)
	defer t.Stop()
	for quiet := 0; quiet < 2; {
		select {
		case <-t.C:
		case <-db.health.ctx.Done():
			quiet = 2
			continue
		}
		if r.InFlight() == 0 {
			quiet++
		} else {
			quiet = 0
		}
		t.Reset(10 * time.Millisecond)
	}
	db.dropNode(r)
}

// dropNode closes the handles of r, which has left.
func (db *DB) dropNode(r *Replica) {
	if db.cfg.tracker != nil {
		db.cfg.tracker.abort(r.index)
	}
	if err := r.closeHandles(); err != nil {
		db.cfg.logger.Warn("rwsplit: closing the handles of a node that left", "node", r.name, "err", errorText(err))
	}
}

// closeHandles closes the node's handles.
func (r *Replica) closeHandles() error {
	var errs []error
	errs = append(errs, r.db.Close())
	if r.monitor != r.db {
		errs = append(errs, r.monitor.Close())
	}
	if r.admin != nil {
		errs = append(errs, r.admin.Close())
	}
	return errors.Join(errs...)
}
