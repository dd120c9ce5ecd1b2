package rwsplit

import (
	"context"
	"strings"
	"testing"
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
