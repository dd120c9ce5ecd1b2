package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A Discoverer lists a DB's nodes from a source of topology: a
// high-availability manager (Patroni), DNS, a service registry. The DB
// asks it every [Discovery] interval, from a goroutine of its own, and
// makes its node set what it lists: a node it lists for the first time
// joins (see [DB.AddNode]), a node it no longer lists leaves (see
// [DB.RemoveNode]), except the current primary. Its word on roles is a
// hint: a node becomes the primary only when its own probe says it takes
// writes, so a stale or wrong listing never sends a write to a standby.
// When it fails or lists nothing, the DB keeps the last node set and its
// probes go on.
//
// Discover must honour ctx (the DB gives it a timeout and cancels it on
// Close) and be safe for use from one goroutine at a time. A Discoverer
// with a CloseIdleConnections method (an HTTP client's) has it called
// when the DB closes.
type Discoverer interface {
	Discover(ctx context.Context) ([]DiscoveredNode, error)
}

// FailoverManager is implemented by a [Discoverer] whose source promotes
// replicas itself (Patroni does). [WithAutoFailover] together with one is
// a configuration error: two promoters would split the brain.
type FailoverManager interface {
	ManagesFailover() bool
}

// DiscoveredNode is one node as a [Discoverer] lists it.
type DiscoveredNode struct {
	// Name identifies the node: host:port, as [Open] names nodes, so
	// that a node opened from a DSN and the same node listed are one.
	Name string
	// DSN opens the node: with the DB's driver ([Open]) or the
	// Discovery's Open function.
	DSN string
	// Role is what the source says the node is (RolePrimary for
	// Patroni's leader); a hint, as the Discoverer doc says.
	Role Role
	// Weight is the node's weight under [Weighted]; zero means 1.
	Weight int
}

// Discovery configures [WithDiscovery].
type Discovery struct {
	// Source lists the nodes.
	Source Discoverer
	// Interval is how often Source is asked, with ±10% jitter; zero means
	// 5s. Every listing costs the source one request per DB, where probes
	// cost every node one query per DB per health interval (see the
	// README on fleets).
	Interval time.Duration
	// Timeout bounds one Discover call; zero means the interval, at most
	// 5s.
	Timeout time.Duration
	// Open opens a node that joins from its DSN. Nil means the driver
	// given to [Open] (the DSN checked as Open checks it); a DB built by
	// [New] needs one. Its error must not contain the DSN.
	Open func(dsn string) (*sql.DB, error)
}

// WithDiscovery has the DB take its node set from d.Source as the
// [Discoverer] doc says. By default the node set is what [New] or [Open]
// was given, changed only by [DB.AddNode] and [DB.RemoveNode]. New returns
// an error when d.Source is nil, an interval is negative, Open is nil with
// New, or d.Source is a [FailoverManager] and [WithAutoFailover] is given.
func WithDiscovery(d Discovery) Option {
	return optionFunc(func(c *config) { c.discovery = &d })
}

// validate checks d's settings and fills in its defaults.
func (d *Discovery) validate(opened bool) error {
	switch {
	case d.Source == nil:
		return errors.New("WithDiscovery: Source is nil")
	case d.Interval < 0 || d.Timeout < 0:
		return errors.New("WithDiscovery: negative interval or timeout")
	case d.Open == nil && !opened:
		return errors.New("WithDiscovery: Open is required with New (Open uses its driver)")
	}
	if d.Interval == 0 {
		d.Interval = 5 * time.Second
	}
	if d.Timeout == 0 {
		d.Timeout = min(d.Interval, 5*time.Second)
	}
	return nil
}

// discoveryState is what Stats reports of discovery.
type discoveryState struct {
	listings atomic.Uint64 // listings applied
	failures atomic.Uint64 // Discover calls that failed or listed nothing usable
	lastErr  atomic.Value  // string
	mu       sync.Mutex    // guards logged
	logged   string        // the last failure logged, so that a lasting one is logged once
}

// discoverLoop asks the source every interval and hands each listing to
// the health loop, the newest replacing one it has not taken yet.
func (db *DB) discoverLoop() {
	d := db.cfg.discovery
	if c, ok := d.Source.(interface{ CloseIdleConnections() }); ok {
		defer c.CloseIdleConnections()
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-db.health.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(db.health.ctx, d.Timeout)
		nodes, err := d.Source.Discover(ctx)
		cancel()
		if db.health.ctx.Err() != nil {
			return
		}
		if err == nil && len(nodes) == 0 {
			err = errors.New("the source listed no node")
		}
		if err != nil {
			db.discoveryFailed(err)
		} else {
			select {
			case <-db.fleet.found: // drop the one not taken yet
			default:
			}
			db.fleet.found <- nodes
		}
		t.Reset(jitter(d.Interval))
	}
}

// discoveryFailed records a failed listing; the node set stays as it is.
func (db *DB) discoveryFailed(err error) {
	s := &db.fleet.disco
	s.failures.Add(1)
	msg := errorText(err)
	s.lastErr.Store(msg)
	s.mu.Lock()
	again := s.logged == msg
	s.logged = msg
	s.mu.Unlock()
	if !again {
		db.cfg.logger.Warn("rwsplit: discovery failed; the node set stays as it is", "err", msg)
	}
}

// applyListing makes the node set what a listing says (health loop only).
func (db *DB) applyListing(listed []DiscoveredNode) {
	s := &db.fleet.disco
	byName := make(map[string]DiscoveredNode, len(listed))
	var order []string
	var bad []string
	for _, n := range listed {
		switch {
		case n.Name == "" || n.DSN == "":
			bad = append(bad, "a node without a name or DSN")
		case byName[n.Name].Name != "":
			bad = append(bad, fmt.Sprintf("%q twice", n.Name))
		default:
			byName[n.Name] = n
			order = append(order, n.Name)
		}
	}
	if len(bad) > 0 {
		db.discoveryFailed(fmt.Errorf("listing ignored in part: %s", strings.Join(bad, ", ")))
	}
	if len(order) == 0 {
		return
	}
	s.listings.Add(1)
	current := map[string]*Replica{}
	for _, r := range db.nodeList() {
		current[r.name] = r
	}
	p := db.primary.Load()
	namesPrimary := false // the source says which node is the primary (Patroni); DNS lists replicas only
	for _, name := range order {
		n := byName[name]
		namesPrimary = namesPrimary || n.Role == RolePrimary
		if n.Role == RolePrimary && name != p.name {
			// The source saw a new primary: confirm it with probes now.
			db.hurry(failoverFastPeriod)
		}
		if r := current[name]; r != nil {
			r.listedReplica.Store(n.Role != RolePrimary)
			continue
		}
		index := int(db.fleet.next.Add(1) - 1)
		h, err := db.openDiscovered(index, n.DSN)
		if err != nil {
			db.discoveryFailed(fmt.Errorf("node %s: %w", name, err))
			continue
		}
		r := db.newNode(index, NodeSpec{Name: name, DB: h, Weight: n.Weight})
		r.listedReplica.Store(n.Role != RolePrimary)
		if err := db.join(r); err != nil {
			h.Close()
			db.discoveryFailed(fmt.Errorf("node %s: %w", name, err))
		}
	}
	for name, r := range current {
		if _, ok := byName[name]; ok {
			continue
		}
		if r == db.primary.Load() {
			if namesPrimary {
				db.discoveryFailed(fmt.Errorf("the primary %s is not listed; it stays until another node takes over", name))
			}
			continue
		}
		db.leave(name)
	}
}

// openDiscovered opens the node of the given index that a listing names,
// from its DSN.
func (db *DB) openDiscovered(index int, dsn string) (*sql.DB, error) {
	if open := db.cfg.discovery.Open; open != nil {
		h, err := open(dsn)
		if err != nil {
			return nil, redact(err, dsn)
		}
		return h, nil
	}
	h, _, err := db.cfg.opener(index, dsn)
	return h, err
}
