package rwsplit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

// servedBy returns how many reads of the load each node served.
func servedBy(m *sync.Map, name string) int64 {
	if v, ok := m.Load(name); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// statsNames returns the names of the nodes in Stats, in order.
func statsNames(db *DB) []string {
	var names []string
	for _, n := range db.Stats().Nodes {
		names = append(names, n.Name)
	}
	return names
}

// Nodes join and leave while reads flow: a joining node serves once its
// probes pass, a leaving one serves no read after RemoveNode returns and
// its pool is closed, and no read fails.
func TestAddAndRemoveNodesUnderLoad(t *testing.T) {
	rec := &recorder{}
	c := newCluster(t, 2, WithHealthCheckInterval(20*time.Millisecond), WithSlowStart(0),
		WithNodeNames("p", "r1", "r2"), WithDialect("generic"), WithObserver(rec))
	stop := make(chan struct{})
	reads, failed, wait, served := readLoad(c.db, 8, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			wait()
		}
	}()

	r3 := fakedriver.NewServer("r3")
	h3 := r3.DB()
	ctx := context.Background()
	c.db.SetMaxOpenConns(7)
	if err := c.db.AddNode(ctx, NodeSpec{Name: "r3", DB: h3}); err != nil {
		t.Fatalf("AddNode: %v", err)
	}
	if n := h3.Stats().MaxOpenConnections; n != 7 {
		t.Errorf("the joining node's pool allows %d connections; the DB's SetMaxOpenConns said 7", n)
	}
	if got := statsNames(c.db); !slices.Equal(got, []string{"p", "r1", "r2", "r3"}) {
		t.Errorf("Stats nodes after AddNode: %v", got)
	}
	waitFor(t, 5*time.Second, "r3 serves reads", func() bool { return servedBy(served, "r3") > 0 })

	before := c.replicas[0].Count(fakedriver.Query)
	if err := c.db.RemoveNode(ctx, "r1"); err != nil {
		t.Fatalf("RemoveNode: %v", err)
	}
	removedAt := c.replicas[0].Count(fakedriver.Query)
	if got := statsNames(c.db); !slices.Equal(got, []string{"p", "r2", "r3"}) {
		t.Errorf("Stats nodes after RemoveNode: %v", got)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wait()
	if after := c.replicas[0].Count(fakedriver.Query); after > removedAt+8 {
		// At most one read per reader may have been on its way.
		t.Errorf("r1 served %d reads after RemoveNode returned (%d before it)", after-removedAt, removedAt-before)
	}
	if failed.Load() != 0 {
		t.Errorf("%d of %d reads failed while nodes joined and left", failed.Load(), reads.Load())
	}
	c.db.fleet.drains.Wait()
	if err := c.db.nodesByName()["r2"].db.Ping(); err != nil {
		t.Errorf("r2's pool: %v", err)
	}
	var states []string
	for _, e := range rec.nodeEvents() {
		if e.State == NodeJoined || e.State == NodeLeft {
			states = append(states, e.Node+" "+e.State.String())
		}
	}
	if !slices.Equal(states, []string{"r3 joined", "r1 left"}) {
		t.Errorf("node events %v", states)
	}
}

func (db *DB) nodesByName() map[string]*Replica {
	m := map[string]*Replica{}
	for _, r := range db.nodeList() {
		m[r.name] = r
	}
	return m
}

// A node that leaves has its pool closed once its calls return.
func TestRemovedNodeClosesItsPool(t *testing.T) {
	c := newCluster(t, 1, WithNodeNames("p", "r1"), WithDialect("generic"), WithHealthCheckInterval(time.Hour))
	h := c.db.nodeList()[1].db
	release := c.replicas[0].Block()
	done := make(chan error, 1)
	go func() {
		var s string
		done <- c.db.QueryRowContext(context.Background(), "SELECT 1").Scan(&s)
	}()
	waitFor(t, 5*time.Second, "a read in flight on r1", func() bool { return c.replicas[0].InFlight() == 1 })
	if err := c.db.RemoveNode(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * drainGrace)
	// A cancelled ping asks the pool alone: closed, or the context's error.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.PingContext(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("r1's pool closed with a call in flight: %v", err)
	}
	release()
	if err := <-done; err != nil {
		t.Errorf("the read in flight on r1 when it left: %v", err)
	}
	c.db.fleet.drains.Wait()
	if err := h.PingContext(cancelled); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("r1's pool after its calls returned: Ping = %v, want closed", err)
	}
}

func TestAddRemoveNodeErrors(t *testing.T) {
	c := newCluster(t, 1, WithNodeNames("p", "r1"), WithDialect("generic"), WithHealthCheckInterval(time.Hour))
	ctx := context.Background()
	other := fakedriver.NewServer("x").DB()
	defer other.Close()
	for _, tt := range []struct {
		name string
		spec NodeSpec
		want error
	}{
		{"no name", NodeSpec{DB: other}, nil},
		{"no handle", NodeSpec{Name: "x"}, nil},
		{"negative weight", NodeSpec{Name: "x", DB: other, Weight: -1}, nil},
		{"same name", NodeSpec{Name: "r1", DB: other}, ErrNodeExists},
		{"same handle", NodeSpec{Name: "x", DB: c.db.nodeList()[1].db}, ErrNodeExists},
	} {
		err := c.db.AddNode(ctx, tt.spec)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("AddNode with %s: %v, want an error (%v)", tt.name, err, tt.want)
		}
	}
	if err := c.db.RemoveNode(ctx, "nope"); !errors.Is(err, ErrNoNode) {
		t.Errorf("RemoveNode of an unknown node: %v", err)
	}
	if err := c.db.RemoveNode(ctx, "p"); err == nil || !strings.Contains(err.Error(), "primary") {
		t.Errorf("RemoveNode of the primary: %v", err)
	}
	if got := statsNames(c.db); !slices.Equal(got, []string{"p", "r1"}) {
		t.Errorf("nodes after refused changes: %v", got)
	}
	c.db.Close()
	if err := c.db.AddNode(ctx, NodeSpec{Name: "y", DB: other}); err != ErrClosed {
		t.Errorf("AddNode after Close: %v", err)
	}
	if err := c.db.RemoveNode(ctx, "r1"); err != ErrClosed {
		t.Errorf("RemoveNode after Close: %v", err)
	}
}

// listing is a Discoverer that returns what the test sets.
type listing struct {
	mu      sync.Mutex
	nodes   []DiscoveredNode
	err     error
	manages bool
	calls   atomic.Int64
}

func (l *listing) Discover(ctx context.Context) ([]DiscoveredNode, error) {
	l.calls.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.nodes), l.err
}

func (l *listing) ManagesFailover() bool { return l.manages }

func (l *listing) set(err error, nodes ...DiscoveredNode) {
	l.mu.Lock()
	l.nodes, l.err = nodes, err
	l.mu.Unlock()
}

// fakeFleet opens fake servers by DSN ("fake:NAME").
type fakeFleet struct {
	mu      sync.Mutex
	servers map[string]*fakedriver.Server
}

func (f *fakeFleet) open(dsn string) (*sql.DB, error) {
	name, ok := strings.CutPrefix(dsn, "fake:")
	if !ok {
		return nil, fmt.Errorf("malformed DSN")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.servers[name]
	if s == nil {
		s = fakedriver.NewServer(name)
		f.servers[name] = s
	}
	return s.DB(), nil
}

func listed(name string, role Role) DiscoveredNode {
	return DiscoveredNode{Name: name, DSN: "fake:" + name, Role: role}
}

// The node set follows a discoverer's listings; bad listings leave it as
// it is and are counted.
func TestDiscoveryFollowsListings(t *testing.T) {
	src := &listing{}
	src.set(nil, listed("p", RolePrimary), listed("r1", RoleReplica))
	fleet := &fakeFleet{servers: map[string]*fakedriver.Server{}}
	c := newCluster(t, 1, WithNodeNames("p", "r1"), WithDialect("generic"), WithHealthCheckInterval(20*time.Millisecond),
		WithSlowStart(0), WithDiscovery(Discovery{Source: src, Interval: 20 * time.Millisecond, Open: fleet.open}))
	waitFor(t, 5*time.Second, "a listing", func() bool { return c.db.Stats().Listings > 0 })

	src.set(nil, listed("p", RolePrimary), listed("r1", RoleReplica), listed("r2", RoleReplica))
	waitFor(t, 5*time.Second, "r2 joins", func() bool { return slices.Contains(statsNames(c.db), "r2") })
	waitFor(t, 5*time.Second, "r2 eligible", func() bool { return nodeStats(c.db, "r2").Eligible })
	seen := map[string]bool{}
	for range 20 {
		seen[served(t, context.Background(), c.db, "SELECT 1")] = true
	}
	if !seen["r2"] {
		t.Errorf("r2 served none of 20 reads after joining: %v", seen)
	}

	src.set(nil, listed("p", RolePrimary), listed("r2", RoleReplica))
	waitFor(t, 5*time.Second, "r1 leaves", func() bool { return !slices.Contains(statsNames(c.db), "r1") })

	// Bad listings: nothing changes, and they are counted.
	for _, bad := range []struct {
		err   error
		nodes []DiscoveredNode
	}{
		{errors.New("endpoint down"), nil},
		{nil, nil},
		{nil, []DiscoveredNode{{Name: "", DSN: "fake:q"}}},
		{nil, []DiscoveredNode{listed("p", RolePrimary), listed("r2", RoleReplica), listed("r2", RoleReplica), {Name: "bad", DSN: "garbage"}}},
	} {
		failures := c.db.Stats().DiscoveryFailures
		src.set(bad.err, bad.nodes...)
		waitFor(t, 5*time.Second, "the bad listing counted", func() bool { return c.db.Stats().DiscoveryFailures > failures })
		if got := statsNames(c.db); !slices.Equal(got, []string{"p", "r2"}) {
			t.Errorf("after a bad listing (%v, %v): nodes %v", bad.err, bad.nodes, got)
		}
	}
	if s := c.db.Stats(); s.LastDiscoveryError == "" || strings.Contains(s.LastDiscoveryError, "garbage") {
		t.Errorf("LastDiscoveryError %q", s.LastDiscoveryError)
	}

	// The primary is never removed for not being listed.
	src.set(nil, listed("r2", RoleReplica))
	time.Sleep(100 * time.Millisecond)
	if got := statsNames(c.db); !slices.Contains(got, "p") {
		t.Errorf("the primary left when the listing dropped it: %v", got)
	}
	if _, err := c.db.ExecContext(context.Background(), "INSERT INTO t VALUES (1)"); err != nil {
		t.Errorf("write after the listing dropped the primary: %v", err)
	}
}

func TestDiscoveryConfigErrors(t *testing.T) {
	h := fakedriver.NewServer("p").DB()
	defer h.Close()
	src := &listing{manages: true}
	for _, tt := range []struct {
		name string
		d    Discovery
		opts []Option
		want string
	}{
		{"no source", Discovery{Open: func(string) (*sql.DB, error) { return nil, nil }}, nil, "Source is nil"},
		{"no Open with New", Discovery{Source: &listing{}}, nil, "Open is required"},
		{"negative interval", Discovery{Source: &listing{}, Interval: -1, Open: func(string) (*sql.DB, error) { return nil, nil }}, nil, "negative"},
		{"two promoters", Discovery{Source: src, Open: func(string) (*sql.DB, error) { return nil, nil }},
			[]Option{WithAutoFailover(AutoFailover{Admin: []*sql.DB{h}, Addrs: []string{"127.0.0.1:1"}})}, "two promoters"},
	} {
		_, err := New(h, nil, append([]Option{WithDialect("postgres"), WithDiscovery(tt.d)}, tt.opts...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

// authError is what a server that refuses the credentials answers: an
// error with a SQLSTATE that says nothing of the connection's health.
type authError struct{}

func (authError) Error() string {
	return "FATAL: password authentication failed for user \"app\" (SQLSTATE 28P01)"
}
func (authError) SQLState() string { return "28P01" }

// A node that joins but refuses every connection (a wrong password in its
// DSN) fails its probes: it never serves a read.
func TestJoiningNodeThatRefusesConnectionsNeverServes(t *testing.T) {
	c := newCluster(t, 1, WithNodeNames("p", "r1"), WithDialect("generic"), WithHealthCheckInterval(20*time.Millisecond), WithSlowStart(0))
	bad := fakedriver.NewServer("r2")
	bad.SetConnectError(authError{})
	if err := c.db.AddNode(context.Background(), NodeSpec{Name: "r2", DB: bad.DB()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "r2 probed and failed", func() bool { return nodeStats(c.db, "r2").LastError != "" })
	time.Sleep(200 * time.Millisecond) // ten probe rounds
	if n := nodeStats(c.db, "r2"); n.Up || n.Eligible {
		t.Fatalf("a node refusing every connection is up %v, eligible %v", n.Up, n.Eligible)
	}
	for range 20 {
		if got := served(t, context.Background(), c.db, "SELECT 1"); got == "r2" {
			t.Fatal("r2 served a read")
		}
	}
}

func TestErrorTextDropsConnectionSettings(t *testing.T) {
	got := errorText(errors.New("failed to connect to `user=app database=orders`: 127.0.0.1:5432 (127.0.0.1): server error: FATAL: password authentication failed"))
	if strings.Contains(got, "user=") || strings.Contains(got, "orders") || !strings.Contains(got, "password authentication failed") {
		t.Errorf("errorText = %q", got)
	}
}

// A node that a discoverer lists as a replica and that says it takes
// writes beside the primary is the primary under another name, not a
// second writer: writes go on, and it gets no reads.
func TestListedReplicaWritableBesideThePrimary(t *testing.T) {
	c := newRoleCluster(t, "postgres", 2)
	round := []probeResult{pgWritable(100, 1), pgStandby(100, 1), pgWritable(100, 1)}
	c.db.nodeList()[2].listedReplica.Store(true)
	playRounds(t, c.db, 2, round)
	if s := c.db.Stats(); s.WritesRefused != "" || s.SplitBrains != 0 {
		t.Fatalf("writes refused (%q) for a listed replica writable beside the primary", s.WritesRefused)
	}
	wantWriteOn(t, c, "p")
	wantEligible(t, c, "r1")

	// Not listed as a replica, the same answers are a split brain.
	c.db.nodeList()[2].listedReplica.Store(false)
	playRound(t, c.db, round)
	if s := c.db.Stats(); s.WritesRefused == "" {
		t.Error("two writable nodes on one timeline, neither listed as a replica: writes accepted")
	}
}
