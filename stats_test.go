package rwsplit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/rwsplit/rwsplit/internal/fakedriver"
)

func TestStatsCounts(t *testing.T) {
	c := newCluster(t, 1, WithNodeNames("main", "copy"))
	ctx := context.Background()
	for range 3 {
		served(t, ctx, c.db, "SELECT 1")
	}
	c.db.Exec("INSERT INTO t VALUES (1)")
	tx, _ := c.db.BeginTx(ctx, nil)
	tx.Rollback()
	s := c.db.Stats()
	p, r := s.Nodes[0], s.Nodes[1]
	if p.Name != "main" || p.Role != RolePrimary || p.Writes != 1 || p.Reads != 0 || p.Transactions != 1 {
		t.Errorf("primary stats %+v", p)
	}
	if r.Name != "copy" || r.Role != RoleReplica || r.Reads != 3 || r.Writes != 0 || r.Latency <= 0 {
		t.Errorf("replica stats %+v", r)
	}
	if r.InFlight != 0 || p.InFlight != 0 {
		t.Errorf("in-flight not back to 0: %d %d", p.InFlight, r.InFlight)
	}
	out := s.String()
	for _, want := range []string{"NODE", "main", "copy", "primary", "replica"} {
		if !strings.Contains(out, want) {
			t.Errorf("Stats.String() lacks %q:\n%s", want, out)
		}
	}
}

// With several replicas the load-aware default policy counts reads in
// the nodes' shared counters; what each node reports served must still be
// what its server answered, and nothing stays in flight, failures
// included.
func TestStatsCountsSharedReads(t *testing.T) {
	c := newCluster(t, 2)
	ctx := context.Background()
	const query = "SELECT 'counted'"
	for _, srv := range c.replicas {
		srv.SetRecord(true)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				rows, err := c.db.QueryContext(ctx, query)
				if err != nil {
					t.Error(err)
					return
				}
				rows.Close()
			}
		})
	}
	wg.Wait()
	s := c.db.Stats()
	var total uint64
	for i, srv := range c.replicas {
		n := s.Nodes[1+i]
		answered := 0
		for _, e := range srv.Log() {
			if e.Kind == fakedriver.Query && e.Query == query {
				answered++
			}
		}
		if int(n.Reads) != answered {
			t.Errorf("%s: Stats says %d reads, its server answered %d", n.Name, n.Reads, answered)
		}
		if n.InFlight != 0 {
			t.Errorf("%s: %d calls still in flight", n.Name, n.InFlight)
		}
		total += n.Reads
	}
	if total != 8*500 {
		t.Errorf("%d reads counted, want %d", total, 8*500)
	}
	if !c.db.nodeList()[1].trackGlobal.Load() {
		t.Fatal("reads were not counted in the shared counters")
	}
	// Reads that fail on every node count as none and leave nothing in
	// flight.
	for _, srv := range c.replicas {
		srv.SetQueryError(errors.New("boom"))
	}
	c.primary.SetQueryError(errors.New("boom"))
	for range 100 {
		if rows, err := c.db.QueryContext(ctx, query); err == nil {
			rows.Close()
			t.Fatal("a read succeeded on failing nodes")
		}
	}
	after := c.db.Stats()
	for i := range c.replicas {
		was, now := s.Nodes[1+i], after.Nodes[1+i]
		if now.Reads != was.Reads || now.InFlight != 0 {
			t.Errorf("%s after failing reads: %d reads (was %d), %d in flight", now.Name, now.Reads, was.Reads, now.InFlight)
		}
	}
}
